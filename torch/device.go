package torch

import (
	"fmt"
	"strconv"
	"strings"
)

// CheckDevice reports whether s is a device name the binding accepts: "auto",
// "cpu", "cuda" or "cuda:N". Whether that device exists is checked at load.
func CheckDevice(s string) error {
	switch {
	case s == "auto", s == "cpu", s == "cuda":
		return nil
	case strings.HasPrefix(s, "cuda:"):
		if n, err := strconv.Atoi(s[len("cuda:"):]); err == nil && n >= 0 {
			return nil
		}
	}
	return fmt.Errorf("torch: unknown device %q (want auto, cpu, cuda or cuda:N)", s)
}
