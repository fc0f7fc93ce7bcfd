package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/gaia-ood/gaia/internal/shard"
)

// runMerge joins the shards of a sharded gaia score run.
func runMerge(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("merge", stderr)
	out := fs.String("out", "", "the merged score `file` (CSV; its provenance FILE.json is written beside it)")
	var dir string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		dir, args = args[0], args[1:]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if dir == "" || *out == "" {
		return usagef("merge: usage: gaia merge DIR --out scores.csv")
	}
	rows, err := shard.Merge(dir, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "merged %d rows from %s into %s\n", rows, dir, *out)
	return nil
}
