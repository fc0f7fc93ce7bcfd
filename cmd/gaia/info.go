package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/cli"
	"github.com/gaia-ood/gaia/torch"
)

func runVersion(stdout io.Writer) error {
	fmt.Fprintf(stdout, "gaia %s\nLibTorch %s\n", gaia.Version, torch.Version())
	return nil
}

func devicesLine() string {
	n := torch.CUDADeviceCount()
	if n == 0 {
		return "cpu (no CUDA device)"
	}
	return fmt.Sprintf("cpu, cuda:0..cuda:%d (%d CUDA device(s))", n-1, n)
}

func runInfo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("info", stderr)
	var mf cli.ModelFlags
	mf.Register(fs, cli.OneDevice, "model", "device", "input")
	model, input, device := &mf.Model, &mf.Input, &mf.Device
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needLibTorch("info"); err != nil {
		return err
	}
	if *model == "" {
		return usagef("info: -model is required")
	}
	if err := torch.CheckDevice(*device); err != nil {
		return usageError{err.Error()}
	}
	var chw [3]int
	var haveSize bool
	if *input != "" {
		v, err := cli.ParseCHW(*input)
		if err != nil {
			return usagef("info: -input %v", err)
		}
		chw, haveSize = v, true
	} else if meta, err := gaia.LoadMeta(*model); err == nil {
		copy(chw[:], meta.InputSize)
		haveSize = true
	}
	m, err := torch.Load(*model, *device)
	if err != nil {
		return err
	}
	defer m.Close()
	var shapes [][]int
	if haveSize {
		shapes, err = m.TapShapes([4]int{1, chw[0], chw[1], chw[2]})
		if err != nil {
			return fmt.Errorf("forward at input %dx%dx%d: %w", chw[0], chw[1], chw[2], err)
		}
	}
	taps := m.Taps()
	fmt.Fprintf(stdout, "model:    %s\n", *model)
	fmt.Fprintf(stdout, "device:   %s\n", m.Device())
	fmt.Fprintf(stdout, "devices:  %s\n", devicesLine())
	fmt.Fprintf(stdout, "libtorch: %s, %d intra-op threads\n", torch.Version(), torch.NumThreads())
	if haveSize {
		fmt.Fprintf(stdout, "input:    %dx%dx%d\n", chw[0], chw[1], chw[2])
	} else {
		fmt.Fprintf(stdout, "input:    unknown (no MODEL.json; give -input CxHxW for tap shapes)\n")
	}
	nNorm, chNorm := 0, 0
	for _, t := range taps {
		if t.Kind.IsNorm() {
			nNorm++
			chNorm += t.Channels
		}
	}
	fmt.Fprintf(stdout, "taps:     %d normalization taps, %d channels in all\n\n", nNorm, chNorm)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tname\tkind\tchannels\tshape\trelu-gated")
	for _, t := range taps {
		shape := "-"
		if shapes != nil && shapes[t.Index] != nil {
			s := make([]string, len(shapes[t.Index])-1)
			for i, d := range shapes[t.Index][1:] {
				s[i] = strconv.Itoa(d)
			}
			shape = strings.Join(s, "x")
		}
		gated := ""
		if t.Gated {
			gated = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\n", t.Index, t.Name, t.Kind, t.Channels, shape, gated)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, t := range taps {
		if t.Kind == torch.KindClassifierInput {
			fmt.Fprintf(stdout, "\nclassifier input: %s (%d features)\n", t.Name, t.Channels)
		}
	}
	for _, w := range m.Warnings() {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	return nil
}
