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

// Devices expands a device list: "cuda:all" (every CUDA device LibTorch
// sees), a comma-separated list such as "cuda:0,cuda:2", or one device. Each
// entry gets a model replica; "cpu,cpu" is allowed (tests, NUMA nodes).
func Devices(s string, cudaCount int) ([]string, error) {
	if s == "cuda:all" {
		if cudaCount == 0 {
			return nil, fmt.Errorf("torch: device cuda:all: no CUDA device (LibTorch sees none)")
		}
		out := make([]string, cudaCount)
		for i := range out {
			out[i] = fmt.Sprintf("cuda:%d", i)
		}
		return out, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, d := range strings.Split(s, ",") {
		d = strings.TrimSpace(d)
		if err := CheckDevice(d); err != nil {
			return nil, err
		}
		if strings.HasPrefix(d, "cuda") && seen[d] {
			return nil, fmt.Errorf("torch: device %s named twice in %q", d, s)
		}
		seen[d] = true
		out = append(out, d)
	}
	if len(out) > 1 {
		for _, d := range out {
			if d == "auto" {
				return nil, fmt.Errorf("torch: device list %q: name each device (auto only alone)", s)
			}
		}
	}
	return out, nil
}
