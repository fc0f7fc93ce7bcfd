package gaia

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/internal/testhook"
	"github.com/gaia-ood/gaia/torch"
)

// Result is one input's prediction and scores.
type Result struct {
	Pred  int     // the class: argmax of the logits
	Prob  float64 // its softmax probability (NaN where the logits were not finite)
	Class string  // its name, from MODEL.json's class_names ("" without)
	// Scores by detector name; higher = more out-of-distribution.
	Scores map[string]float64
}

// ScoreImages scores PNG or JPEG images (told apart by their bytes), each
// decoded and transformed exactly as gaia score reads an image file (the
// Pillow-identical path, with the transform of Options, else MODEL.json's),
// within Options.Limits. An image that cannot be read is an *ImageError
// naming its index, and no image of the call is scored. At most
// DecodeWorkers images are decoded at once, over all calls. The inputs then
// join the queue as ScoreTensor's do.
func (m *Model) ScoreImages(ctx context.Context, images [][]byte) ([]Result, error) {
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.leave()
	if err := m.checkCount(len(images)); err != nil {
		return nil, err
	}
	c, h, w := m.Input()
	per := c * h * w
	x := make([]float32, len(images)*per)
	errs := make([]error, len(images))
	next := make(chan int)
	var wg sync.WaitGroup
	for k := 0; k < min(len(images), m.opt.DecodeWorkers); k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = m.decodeImage(ctx, images[i], i, x[i*per:(i+1)*per])
			}
		}()
	}
feed:
	for i := range images {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			return nil, &ImageError{Index: i, Err: err}
		}
	}
	return m.score(ctx, x, len(images))
}

// decodeImage decodes one image into dst within a decode slot.
func (m *Model) decodeImage(ctx context.Context, raw []byte, index int, dst []float32) error {
	select {
	case m.decode <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-m.decode }()
	if len(raw) == 0 {
		return fmt.Errorf("empty image")
	}
	img, err := data.DecodeFor(ctx, raw, m.tf, m.opt.Limits)
	if err != nil {
		return err
	}
	if err := m.tf.Check(img, m.opt.Limits.Bytes); err != nil {
		return err
	}
	return m.tf.Apply(img, index, dst)
}

// ScoreTensor scores n inputs already in the model's layout and
// normalization (N x C x H x W float32, Input's size). Calls from many
// goroutines are gathered into batches of up to MaxBatch inputs, waiting at
// most MaxWait for a batch to fill; a result never depends on the other
// inputs of its batch. When ctx ends first the call returns ctx's error and
// its inputs leave the queue. A call whose inputs would pass Options.Queue
// gets ErrQueueFull at once.
func (m *Model) ScoreTensor(ctx context.Context, x []float32, n int) ([]Result, error) {
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.leave()
	if err := m.checkCount(n); err != nil {
		return nil, err
	}
	c, h, w := m.Input()
	if len(x) != n*c*h*w {
		return nil, &InputError{fmt.Sprintf("%d inputs of %dx%dx%d take %d numbers, not %d", n, c, h, w, n*c*h*w, len(x))}
	}
	// The queue holds its own copy: a call that ends early leaves its
	// inputs to a batch that may still be reading them.
	return m.score(ctx, append([]float32(nil), x...), n)
}

func (m *Model) checkCount(n int) error {
	switch {
	case n <= 0:
		return &InputError{"no inputs"}
	case n > m.opt.Queue:
		return &InputError{fmt.Sprintf("%d inputs in one call: the queue holds at most %d (Options.Queue); split the call", n, m.opt.Queue)}
	}
	return nil
}

// score queues n inputs and waits for their results.
func (m *Model) score(ctx context.Context, x []float32, n int) ([]Result, error) {
	j := &job{ctx: ctx, x: x, n: n, res: make([]Result, n), finished: make(chan struct{})}
	if err := m.q.push(j); err != nil {
		return nil, err
	}
	select {
	case <-j.finished:
	case <-ctx.Done():
		m.q.remove(j)
		select {
		case <-j.finished: // finished meanwhile
		default:
			return nil, ctx.Err()
		}
	}
	if j.err != nil {
		return nil, j.err
	}
	return j.res, nil
}

// batcher scores batches on replica i until the queue closes.
func (m *Model) batcher(i int) {
	s, r := m.scorers[i], m.replicas[i]
	c, h, w := m.Input()
	per := c * h * w
	buf := make([]float32, m.opt.MaxBatch*per)
	cpu := !strings.HasPrefix(r.Device(), "cuda")
	var batch []segment
	for {
		var ok bool
		batch, ok = m.q.gather(batch[:0], m.opt.MaxBatch, m.opt.MaxWait)
		if !ok {
			return
		}
		if hook := testhook.BeforeBatch(m.path); hook != nil {
			hook()
		}
		n := 0
		for _, sg := range batch {
			n += copy(buf[n*per:], sg.j.x[sg.from*per:sg.to*per]) / per
		}
		if cpu {
			if n < m.opt.SmallBatch {
				r.SetThreads(1)
			} else {
				r.SetThreads(m.threads[i])
			}
		}
		t0 := time.Now()
		bs, err := s.Score(&torch.Tensor{Shape: []int{n, c, h, w}, Data: buf[:n*per]})
		if m.opt.OnBatch != nil {
			m.opt.OnBatch(n, time.Since(t0))
		}
		k := 0
		for _, sg := range batch {
			if err != nil {
				sg.j.complete(sg.from, nil, fmt.Errorf("scoring a batch of %d on %s: %w", n, r.Device(), err))
				continue
			}
			out := make([]Result, sg.to-sg.from)
			for o := range out {
				out[o] = m.result(bs, k)
				k++
			}
			sg.j.complete(sg.from, out, nil)
		}
	}
}

// result is sample k of a batch's scores as a Result.
func (m *Model) result(bs *BatchScores, k int) Result {
	r := Result{Pred: bs.Pred[k], Prob: bs.Prob[k], Scores: make(map[string]float64, len(bs.Scores))}
	if r.Pred < len(m.meta.ClassNames) {
		r.Class = m.meta.ClassNames[r.Pred]
	}
	for d, name := range m.opt.Detectors {
		r.Scores[name] = bs.Scores[d][k]
	}
	return r
}

// job is one call's inputs on their way through the queue. Its inputs may
// be spread over several batches; it is finished when every input is scored
// or the first batch holding one of them fails.
type job struct {
	ctx  context.Context
	x    []float32
	n    int
	next int // inputs handed to batches (under queue.mu)

	mu       sync.Mutex
	scored   int
	res      []Result
	err      error
	finished chan struct{}
}

// complete records the results of inputs [from, from+len(out)), or err.
func (j *job) complete(from int, out []Result, err error) {
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
	copy(j.res[from:], out)
	j.scored += len(out)
	if j.scored == j.n {
		close(j.finished)
	}
}

// segment is a run of one job's inputs inside a batch.
type segment struct {
	j        *job
	from, to int
}

// queue holds the inputs waiting for a batch, bounded in inputs: a call that
// would overflow it is refused (back-pressure) rather than queued. Several
// batchers (one per replica) gather from it.
type queue struct {
	mu      sync.Mutex
	jobs    []*job
	pending int // inputs waiting, not yet handed to a batch
	taken   int // inputs handed to batches, ever
	limit   int
	closed  bool
	wake    chan struct{} // a token when inputs arrive
	stop    chan struct{} // closed when the queue closes
	depth   func(int)     // reports pending (metrics); may be nil
}

func newQueue(limit int, depth func(int)) *queue {
	if depth == nil {
		depth = func(int) {}
	}
	return &queue{limit: limit, wake: make(chan struct{}, 1), stop: make(chan struct{}), depth: depth}
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
		return ErrClosed
	}
	if q.pending+j.n > q.limit {
		return fmt.Errorf("%w: %d inputs waiting, %d more would pass the bound of %d", ErrQueueFull, q.pending, j.n, q.limit)
	}
	q.jobs = append(q.jobs, j)
	q.pending += j.n
	q.depth(q.pending)
	q.signal()
	return nil
}

// remove takes a job's waiting inputs out of the queue (its call ended);
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
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.stop)
	}
}

// take moves up to room waiting inputs into batch, front first, dropping the
// jobs whose call has ended; inputs left over wake another batcher.
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
	if q.pending > 0 {
		q.signal()
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
		if closed { // no more inputs will come: what is there, now
			if n > 0 || empty {
				return batch, n > 0
			}
			continue
		}
		if n > 0 && deadline == nil {
			if maxWait <= 0 {
				return batch, true
			}
			deadline = time.NewTimer(maxWait)
		}
		var timeout <-chan time.Time
		if deadline != nil {
			timeout = deadline.C
		}
		select {
		case <-q.wake:
		case <-q.stop:
		case <-timeout:
			batch, _ = q.take(batch, maxBatch-n)
			return batch, true
		}
	}
}

// waiting is the number of inputs waiting.
func (q *queue) waiting() int {
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
