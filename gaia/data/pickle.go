package data

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// A restricted unpickler for the plain structures of the CIFAR python
// batches (cifar-10-batches-py, cifar-100-python): dicts, lists, tuples,
// numbers, strings, bytes and uint8 NumPy arrays. It interprets the pickle
// opcodes itself and never runs anything: the only globals it accepts are
// the three NumPy needs to rebuild an array (numpy.core.multiarray.
// _reconstruct, numpy.ndarray, numpy.dtype) and the one Python 3 uses to
// write bytes at protocol 2 (_codecs.encode), each of which it emulates;
// any other global is an error. Python 2's str (what the released files
// hold) reads as bytes.

// pyArray is a NumPy array as the pickle rebuilt it.
type pyArray struct {
	dtype   string // NumPy's dtype code, such as "u1"
	shape   []int
	fortran bool
	data    []byte
}

// pyDtype is a numpy.dtype being rebuilt.
type pyDtype struct{ code string }

// pyGlobal is an allowed global, by name.
type pyGlobal struct{ name string }

// pyMark is the MARK on the stack.
type pyMark struct{}

// pyDict keeps a pickled dict's keys in order; keys are strings (Python 2
// str and bytes are read as their text) or integers.
type pyDict struct {
	keys []any
	vals map[any]any
}

func (d *pyDict) set(k, v any) error {
	switch kk := k.(type) {
	case []byte:
		k = string(kk)
	case string, int64:
	default:
		return fmt.Errorf("a dict key of type %T", k)
	}
	if _, ok := d.vals[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.vals[k] = v
	return nil
}

var allowedGlobals = map[string]bool{
	"numpy.core.multiarray._reconstruct":  true,
	"numpy._core.multiarray._reconstruct": true,
	"numpy.ndarray":                       true,
	"numpy.dtype":                         true,
	"_codecs.encode":                      true,
}

// maxPickleAlloc bounds one string or container read from a pickle.
const maxPickleAlloc = 4 << 30

// unpickle reads one pickled value.
func unpickle(r io.Reader) (any, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var stack []any
	memo := map[int64]any{}
	pop := func() (any, error) {
		if len(stack) == 0 {
			return nil, errors.New("stack underflow")
		}
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		return v, nil
	}
	popMark := func() ([]any, error) {
		for i := len(stack) - 1; i >= 0; i-- {
			if _, ok := stack[i].(pyMark); ok {
				items := append([]any(nil), stack[i+1:]...)
				stack = stack[:i]
				return items, nil
			}
		}
		return nil, errors.New("no MARK on the stack")
	}
	readN := func(n int64) ([]byte, error) {
		if n < 0 || n > maxPickleAlloc {
			return nil, fmt.Errorf("a length of %d", n)
		}
		return readExactly(br, n)
	}
	u8 := func() (int64, error) { b, err := br.ReadByte(); return int64(b), err }
	u32 := func() (int64, error) {
		var b [4]byte
		_, err := io.ReadFull(br, b[:])
		return int64(binary.LittleEndian.Uint32(b[:])), err
	}
	u64 := func() (int64, error) {
		var b [8]byte
		_, err := io.ReadFull(br, b[:])
		v := binary.LittleEndian.Uint64(b[:])
		if v > maxPickleAlloc {
			return 0, fmt.Errorf("a length of %d", v)
		}
		return int64(v), err
	}
	line := func() (string, error) {
		s, err := br.ReadString('\n')
		return strings.TrimSuffix(s, "\n"), err
	}
	top := func() (any, error) {
		if len(stack) == 0 {
			return nil, errors.New("stack underflow")
		}
		return stack[len(stack)-1], nil
	}
	for pos := 0; ; pos++ {
		op, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("truncated (no STOP): %w", err)
		}
		fail := func(err error) (any, error) { return nil, fmt.Errorf("opcode %q: %w", op, err) }
		switch op {
		case 0x80: // PROTO
			if _, err := u8(); err != nil {
				return fail(err)
			}
		case 0x95: // FRAME
			if _, err := u64(); err != nil {
				return fail(err)
			}
		case '.': // STOP
			v, err := pop()
			if err != nil {
				return fail(err)
			}
			return v, nil
		case '(':
			stack = append(stack, pyMark{})
		case '0':
			if _, err := pop(); err != nil {
				return fail(err)
			}
		case '1':
			if _, err := popMark(); err != nil {
				return fail(err)
			}
		case '2':
			v, err := top()
			if err != nil {
				return fail(err)
			}
			stack = append(stack, v)
		case '}':
			stack = append(stack, &pyDict{vals: map[any]any{}})
		case ']':
			stack = append(stack, &[]any{})
		case ')':
			stack = append(stack, []any{})
		case 'd', 'l', 't':
			items, err := popMark()
			if err != nil {
				return fail(err)
			}
			switch op {
			case 'd':
				d := &pyDict{vals: map[any]any{}}
				if len(items)%2 != 0 {
					return fail(errors.New("odd number of dict items"))
				}
				for i := 0; i < len(items); i += 2 {
					if err := d.set(items[i], items[i+1]); err != nil {
						return fail(err)
					}
				}
				stack = append(stack, d)
			case 'l':
				stack = append(stack, &items)
			default:
				stack = append(stack, items)
			}
		case 0x85, 0x86, 0x87: // TUPLE1..3
			n := int(op - 0x84)
			if len(stack) < n {
				return fail(errors.New("stack underflow"))
			}
			t := append([]any(nil), stack[len(stack)-n:]...)
			stack = append(stack[:len(stack)-n], t)
		case 's', 'u':
			var items []any
			if op == 's' {
				v, err1 := pop()
				k, err2 := pop()
				if err1 != nil || err2 != nil {
					return fail(errors.New("stack underflow"))
				}
				items = []any{k, v}
			} else if items, err = popMark(); err != nil {
				return fail(err)
			}
			t, err := top()
			if err != nil {
				return fail(err)
			}
			d, ok := t.(*pyDict)
			if !ok || len(items)%2 != 0 {
				return fail(fmt.Errorf("SETITEM on a %T", t))
			}
			for i := 0; i < len(items); i += 2 {
				if err := d.set(items[i], items[i+1]); err != nil {
					return fail(err)
				}
			}
		case 'a', 'e':
			var items []any
			if op == 'a' {
				v, err := pop()
				if err != nil {
					return fail(err)
				}
				items = []any{v}
			} else if items, err = popMark(); err != nil {
				return fail(err)
			}
			t, err := top()
			if err != nil {
				return fail(err)
			}
			l, ok := t.(*[]any)
			if !ok {
				return fail(fmt.Errorf("APPEND on a %T", t))
			}
			*l = append(*l, items...)
		case 'J', 'K', 'M':
			var v int64
			switch op {
			case 'J':
				var b [4]byte
				if _, err := io.ReadFull(br, b[:]); err != nil {
					return fail(err)
				}
				v = int64(int32(binary.LittleEndian.Uint32(b[:])))
			case 'K':
				v, err = u8()
			default:
				var b [2]byte
				_, err = io.ReadFull(br, b[:])
				v = int64(binary.LittleEndian.Uint16(b[:]))
			}
			if err != nil {
				return fail(err)
			}
			stack = append(stack, v)
		case 0x8a, 0x8b: // LONG1, LONG4
			var n int64
			if op == 0x8a {
				n, err = u8()
			} else {
				n, err = u32()
			}
			if err != nil || n > 8 {
				return fail(fmt.Errorf("a long of %d bytes", n))
			}
			b, err := readN(n)
			if err != nil {
				return fail(err)
			}
			// Little-endian two's complement.
			be := make([]byte, len(b))
			for i := range b {
				be[len(b)-1-i] = b[i]
			}
			x := new(big.Int).SetBytes(be)
			if len(b) > 0 && b[len(b)-1]&0x80 != 0 {
				x.Sub(x, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
			}
			stack = append(stack, x.Int64())
		case 'I', 'L':
			s, err := line()
			if err != nil {
				return fail(err)
			}
			s = strings.TrimSuffix(s, "L")
			switch s {
			case "00":
				stack = append(stack, false)
			case "01":
				stack = append(stack, true)
			default:
				v, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return fail(err)
				}
				stack = append(stack, v)
			}
		case 'N':
			stack = append(stack, nil)
		case 0x88:
			stack = append(stack, true)
		case 0x89:
			stack = append(stack, false)
		case 'G':
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return fail(err)
			}
			stack = append(stack, math.Float64frombits(binary.BigEndian.Uint64(b[:])))
		case 'T', 'U', 'B', 'C', 0x8e, 0x96: // BINSTRING (Python 2 str), SHORT_BINSTRING, BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
			var n int64
			switch op {
			case 'U', 'C':
				n, err = u8()
			case 'T', 'B':
				n, err = u32()
			default:
				n, err = u64()
			}
			if err != nil {
				return fail(err)
			}
			b, err := readN(n)
			if err != nil {
				return fail(err)
			}
			stack = append(stack, b)
		case 'X', 0x8c, 0x8d: // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
			var n int64
			switch op {
			case 0x8c:
				n, err = u8()
			case 'X':
				n, err = u32()
			default:
				n, err = u64()
			}
			if err != nil {
				return fail(err)
			}
			b, err := readN(n)
			if err != nil {
				return fail(err)
			}
			stack = append(stack, string(b))
		case 'q', 'r', 0x94, 'p': // BINPUT, LONG_BINPUT, MEMOIZE, PUT
			var k int64
			switch op {
			case 'q':
				k, err = u8()
			case 'r':
				k, err = u32()
			case 'p':
				var s string
				if s, err = line(); err == nil {
					k, err = strconv.ParseInt(s, 10, 64)
				}
			default:
				k = int64(len(memo))
			}
			if err != nil {
				return fail(err)
			}
			v, err := top()
			if err != nil {
				return fail(err)
			}
			memo[k] = v
		case 'h', 'j', 'g': // BINGET, LONG_BINGET, GET
			var k int64
			switch op {
			case 'h':
				k, err = u8()
			case 'j':
				k, err = u32()
			default:
				var s string
				if s, err = line(); err == nil {
					k, err = strconv.ParseInt(s, 10, 64)
				}
			}
			if err != nil {
				return fail(err)
			}
			v, ok := memo[k]
			if !ok {
				return fail(fmt.Errorf("memo %d is not set", k))
			}
			stack = append(stack, v)
		case 'c', 0x93: // GLOBAL, STACK_GLOBAL
			var mod, name string
			if op == 'c' {
				if mod, err = line(); err == nil {
					name, err = line()
				}
				if err != nil {
					return fail(err)
				}
			} else {
				n, err1 := pop()
				m, err2 := pop()
				ns, ok1 := n.(string)
				ms, ok2 := m.(string)
				if err1 != nil || err2 != nil || !ok1 || !ok2 {
					return fail(errors.New("STACK_GLOBAL without two strings"))
				}
				mod, name = ms, ns
			}
			full := mod + "." + name
			if !allowedGlobals[full] {
				return nil, fmt.Errorf("the pickle refers to %s, which gaia does not read: it reads only the plain dicts, lists and uint8 arrays of the CIFAR python batches, and never runs pickled code", full)
			}
			stack = append(stack, pyGlobal{full})
		case 'R': // REDUCE: an allowed global called, emulated
			args, err1 := pop()
			fn, err2 := pop()
			if err1 != nil || err2 != nil {
				return fail(errors.New("stack underflow"))
			}
			g, ok := fn.(pyGlobal)
			a, ok2 := args.([]any)
			if !ok || !ok2 {
				return fail(fmt.Errorf("REDUCE of a %T", fn))
			}
			v, err := reduceGlobal(g.name, a)
			if err != nil {
				return fail(err)
			}
			stack = append(stack, v)
		case 'b': // BUILD: the state of a rebuilt array or dtype
			state, err := pop()
			if err != nil {
				return fail(err)
			}
			t, err := top()
			if err != nil {
				return fail(err)
			}
			if err := build(t, state); err != nil {
				return fail(err)
			}
		default:
			return nil, fmt.Errorf("unsupported pickle opcode 0x%02x at op %d", op, pos)
		}
	}
}

func reduceGlobal(name string, args []any) (any, error) {
	switch name {
	case "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct":
		if len(args) < 1 {
			return nil, errors.New("_reconstruct without arguments")
		}
		if g, ok := args[0].(pyGlobal); !ok || g.name != "numpy.ndarray" {
			return nil, fmt.Errorf("_reconstruct of %v, not numpy.ndarray", args[0])
		}
		return &pyArray{}, nil
	case "numpy.dtype":
		if len(args) < 1 {
			return nil, errors.New("dtype without arguments")
		}
		code, ok := asText(args[0])
		if !ok {
			return nil, fmt.Errorf("dtype(%v)", args[0])
		}
		return &pyDtype{code: code}, nil
	case "_codecs.encode":
		if len(args) != 2 {
			return nil, errors.New("_codecs.encode needs two arguments")
		}
		s, ok1 := args[0].(string)
		enc, ok2 := args[1].(string)
		if !ok1 || !ok2 || (enc != "latin1" && enc != "latin-1") {
			return nil, fmt.Errorf("_codecs.encode(%T, %v)", args[0], args[1])
		}
		b := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 0xff {
				return nil, errors.New("latin1 text with a character over 0xff")
			}
			b = append(b, byte(r))
		}
		return b, nil
	}
	return nil, fmt.Errorf("%s cannot be called", name)
}

// build applies BUILD's state to an array or a dtype.
func build(target, state any) error {
	switch t := target.(type) {
	case *pyDtype:
		return nil // byte order and flags: the uint8 arrays read need none
	case *pyArray:
		st, ok := state.([]any)
		if !ok || len(st) != 5 {
			return fmt.Errorf("an array state of %T", state)
		}
		shape, ok := st[1].([]any)
		if !ok {
			return errors.New("an array shape that is not a tuple")
		}
		n := 1
		for _, d := range shape {
			v, ok := d.(int64)
			if !ok || v < 0 || v > maxPickleAlloc {
				return fmt.Errorf("an array dimension %v", d)
			}
			t.shape = append(t.shape, int(v))
			n *= int(v)
		}
		dt, ok := st[2].(*pyDtype)
		if !ok {
			return errors.New("an array without a dtype")
		}
		t.dtype = dt.code
		t.fortran, _ = st[3].(bool)
		raw, ok := st[4].([]byte)
		if !ok {
			return fmt.Errorf("an array whose data is a %T (an object array?)", st[4])
		}
		if t.dtype != "u1" {
			return fmt.Errorf("an array of dtype %s (gaia reads uint8 image arrays)", t.dtype)
		}
		if len(raw) != n {
			return fmt.Errorf("an array of shape %v with %d bytes", t.shape, len(raw))
		}
		t.data = raw
		return nil
	}
	return fmt.Errorf("BUILD on a %T", target)
}

func asText(v any) (string, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case []byte:
		return string(s), true
	}
	return "", false
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b: b} }

type sliceReader struct{ b []byte }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

// readExactly reads n bytes, allocating only as they arrive (a corrupt
// length in a short file costs nothing).
func readExactly(r io.Reader, n int64) ([]byte, error) {
	if n <= 1<<20 {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	b, err := io.ReadAll(io.LimitReader(r, n))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != n {
		return nil, io.ErrUnexpectedEOF
	}
	return b, nil
}
