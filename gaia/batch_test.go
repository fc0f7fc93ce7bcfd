package gaia

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newJob(ctx context.Context, x []float32, n int) *job {
	return &job{ctx: ctx, x: x, n: n, res: make([]Result, n), finished: make(chan struct{})}
}

func spans(batch []segment, jobs map[*job]string) []string {
	var out []string
	for _, sg := range batch {
		out = append(out, fmt.Sprintf("%s[%d:%d]", jobs[sg.j], sg.from, sg.to))
	}
	return out
}

// Three calls of 3, 5 and 2 inputs fill batches of at most 4 inputs in
// arrival order, a call spanning batches; a call whose context has ended
// is dropped before it is batched, and a call that would pass the bound is
// refused at once.
func TestQueueBatching(t *testing.T) {
	q := newQueue(16, nil)
	ctx := context.Background()
	gone, cancel := context.WithCancel(ctx)
	a, b, c, d := newJob(ctx, nil, 3), newJob(ctx, nil, 5), newJob(gone, nil, 4), newJob(ctx, nil, 2)
	names := map[*job]string{a: "a", b: "b", c: "c", d: "d"}
	for _, j := range []*job{a, b, c, d} {
		require.NoError(t, q.push(j))
	}
	cancel()
	err := q.push(newJob(ctx, nil, 3))
	assert.ErrorIs(t, err, ErrQueueFull)
	assert.EqualError(t, err, "the queue is full: 14 inputs waiting, 3 more would pass the bound of 16")
	q.close()
	var got [][]string
	for {
		batch, ok := q.gather(nil, 4, time.Millisecond)
		if !ok {
			break
		}
		got = append(got, spans(batch, names))
	}
	assert.Equal(t, [][]string{{"a[0:3]", "b[0:1]"}, {"b[1:5]"}, {"d[0:2]"}}, got)
}

func TestQueueBounds(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		limit   int
		sizes   []int
		refused []bool
		pending int
	}{
		{"fits", 8, []int{3, 5}, []bool{false, false}, 8},
		{"one too many", 8, []int{3, 5, 1}, []bool{false, false, true}, 8},
		{"larger than the queue", 4, []int{5, 4}, []bool{true, false}, 4},
		{"empty request", 4, []int{0, 4}, []bool{false, false}, 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var depth int
			q := newQueue(c.limit, func(n int) { depth = n })
			for i, n := range c.sizes {
				err := q.push(newJob(ctx, nil, n))
				if c.refused[i] {
					assert.ErrorIs(t, err, ErrQueueFull)
				} else {
					assert.NoError(t, err)
				}
			}
			assert.Equal(t, c.pending, q.waiting())
			assert.Equal(t, c.pending, depth, "the depth metric follows")
		})
	}
}

func TestQueueRemoveAndClose(t *testing.T) {
	ctx := context.Background()
	q := newQueue(10, func(int) {})
	a, b := newJob(ctx, nil, 6), newJob(ctx, nil, 3)
	require.NoError(t, q.push(a))
	require.NoError(t, q.push(b))
	batch, ok := q.gather(nil, 4, 0)
	require.True(t, ok)
	assert.Equal(t, []segment{{a, 0, 4}}, batch)
	q.remove(a) // its last two inputs never reach a batch
	assert.Equal(t, 3, q.waiting())
	q.close()
	assert.ErrorIs(t, q.push(newJob(ctx, nil, 1)), ErrClosed)
	batch, ok = q.gather(nil, 4, 0)
	require.True(t, ok, "what was queued before close is still handed out")
	assert.Equal(t, []segment{{b, 0, 3}}, batch)
	_, ok = q.gather(nil, 4, 0)
	assert.False(t, ok)
	assert.Equal(t, 7, q.handedOut())
}
