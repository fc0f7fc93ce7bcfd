package serve

import (
	"context"
	"errors"
	"sync"
	"time"
)

var (
	errQueueFull = errors.New("the queue is full")
	errShutdown  = errors.New("the server is shutting down")
)

// job is one request's inputs on their way through the queue. Its inputs may
// be spread over several batches; it is finished when every input is scored
// or the first batch holding one of them fails.
type job struct {
	ctx  context.Context
	x    []float32 // n inputs of per floats each, in the model's layout
	n    int
	next int // inputs handed to batches (under queue.mu)

	mu       sync.Mutex
	scored   int
	res      []output
	err      error
	finished chan struct{}
}

func newJob(ctx context.Context, x []float32, n int) *job {
	return &job{ctx: ctx, x: x, n: n, res: make([]output, n), finished: make(chan struct{})}
}

// output is one input's prediction and scores (Scorer.Detectors order).
type output struct {
	pred   int
	prob   float64
	scores []float64
}

// complete records the outputs of inputs [from, from+len(outs)), or err.
func (j *job) complete(from int, outs []output, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil || j.scored == j.n {
		return // already finished (an earlier batch failed)
	}
	if err != nil {
		j.err = err
		close(j.finished)
		return
	}
	copy(j.res[from:], outs)
	j.scored += len(outs)
	if j.scored == j.n {
		close(j.finished)
	}
}

// segment is a run of one job's inputs inside a batch.
type segment struct {
	j        *job
	from, to int
}

// queue holds the inputs waiting for a batch, bounded in inputs: a request
// that would overflow it is refused (back-pressure) rather than queued.
type queue struct {
	mu      sync.Mutex
	jobs    []*job
	pending int // inputs waiting, not yet handed to a batch
	taken   int // inputs handed to batches, ever
	limit   int
	closed  bool
	wake    chan struct{} // a token when inputs arrive or the queue closes
	depth   func(int)     // reports pending (metrics)
}

func newQueue(limit int, depth func(int)) *queue {
	return &queue{limit: limit, wake: make(chan struct{}, 1), depth: depth}
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push queues a job, or refuses it when the queue is closed or full.
func (q *queue) push(j *job) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return errShutdown
	}
	if q.pending+j.n > q.limit {
		return errQueueFull
	}
	q.jobs = append(q.jobs, j)
	q.pending += j.n
	q.depth(q.pending)
	q.signal()
	return nil
}

// remove takes a job's waiting inputs out of the queue (its request ended);
// inputs already in a batch are scored and their results dropped.
func (q *queue) remove(j *job) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, k := range q.jobs {
		if k == j {
			q.pending -= j.n - j.next
			j.next = j.n
			q.jobs = append(q.jobs[:i], q.jobs[i+1:]...)
			q.depth(q.pending)
			return
		}
	}
}

// close refuses new jobs; the jobs already queued are still handed out.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// take moves up to room waiting inputs into batch, front first, dropping the
// jobs whose request has ended.
func (q *queue) take(batch []segment, room int) ([]segment, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	taken := 0
	for len(q.jobs) > 0 && taken < room {
		j := q.jobs[0]
		if j.ctx.Err() != nil {
			q.pending -= j.n - j.next
			j.next = j.n
			q.jobs = q.jobs[1:]
			continue
		}
		k := min(j.n-j.next, room-taken)
		batch = append(batch, segment{j: j, from: j.next, to: j.next + k})
		j.next += k
		q.pending -= k
		q.taken += k
		taken += k
		if j.next == j.n {
			q.jobs = q.jobs[1:]
		}
	}
	q.depth(q.pending)
	return batch, taken
}

// gather blocks until at least one input waits, then collects inputs until
// maxBatch of them or until maxWait has passed since the first. It returns
// false once the queue is closed and empty.
func (q *queue) gather(batch []segment, maxBatch int, maxWait time.Duration) ([]segment, bool) {
	n := 0
	var deadline *time.Timer
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	for {
		var k int
		batch, k = q.take(batch, maxBatch-n)
		n += k
		if n == maxBatch {
			return batch, true
		}
		q.mu.Lock()
		closed, empty := q.closed, len(q.jobs) == 0
		q.mu.Unlock()
		if closed && empty {
			return batch, n > 0
		}
		if n > 0 && deadline == nil {
			if maxWait <= 0 {
				return batch, true
			}
			deadline = time.NewTimer(maxWait)
		}
		if deadline == nil {
			<-q.wake
			continue
		}
		select {
		case <-q.wake:
		case <-deadline.C:
			batch, k = q.take(batch, maxBatch-n)
			return batch, true
		}
	}
}

// pendingInputs is the number of inputs waiting.
func (q *queue) pendingInputs() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending
}

// handedOut is the number of inputs ever handed to batches.
func (q *queue) handedOut() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.taken
}
