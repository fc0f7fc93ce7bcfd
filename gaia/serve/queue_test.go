package serve

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func spans(batch []segment, jobs map[*job]string) []string {
	var out []string
	for _, sg := range batch {
		out = append(out, fmt.Sprintf("%s[%d:%d]", jobs[sg.j], sg.from, sg.to))
	}
	return out
}

// Example_batching: three requests of 3, 5 and 2 inputs fill batches of at
// most 4 inputs in arrival order, a request spanning batches; a request
// whose client has gone is dropped before it is batched.
func Example_batching() {
	q := newQueue(16, func(int) {})
	ctx := context.Background()
	gone, cancel := context.WithCancel(ctx)
	a, b, c, d := newJob(ctx, nil, 3), newJob(ctx, nil, 5), newJob(gone, nil, 4), newJob(ctx, nil, 2)
	names := map[*job]string{a: "a", b: "b", c: "c", d: "d"}
	for _, j := range []*job{a, b, c, d} {
		if err := q.push(j); err != nil {
			fmt.Println(err)
		}
	}
	cancel()
	fmt.Println(q.push(newJob(ctx, nil, 3)))
	q.close()
	for {
		batch, ok := q.gather(nil, 4, time.Millisecond)
		if !ok {
			break
		}
		fmt.Println(spans(batch, names))
	}
	// Output:
	// the queue is full
	// [a[0:3] b[0:1]]
	// [b[1:5]]
	// [d[0:2]]
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
					assert.ErrorIs(t, err, errQueueFull)
				} else {
					assert.NoError(t, err)
				}
			}
			assert.Equal(t, c.pending, q.pendingInputs())
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
	assert.Equal(t, 3, q.pendingInputs())
	q.close()
	assert.ErrorIs(t, q.push(newJob(ctx, nil, 1)), errShutdown)
	batch, ok = q.gather(nil, 4, 0)
	require.True(t, ok, "what was queued before close is still handed out")
	assert.Equal(t, []segment{{b, 0, 3}}, batch)
	_, ok = q.gather(nil, 4, 0)
	assert.False(t, ok)
	assert.Equal(t, 7, q.handedOut())
}
