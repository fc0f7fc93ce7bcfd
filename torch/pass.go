package torch

// Loss names the scalar a backward pass starts from.
type Loss int32

// Losses (shim.h's GAIA_LOSS_*). z are the logits (the module's first
// output), N x K.
const (
	LossMaxLogit      Loss = 1 // sum_n max_k z_nk (GAIA-Z)
	LossSumLogSoftmax Loss = 2 // sum_n sum_k log softmax(z_n)_k (GAIA-A, output component)
	LossSumTap        Loss = 3 // sum of a tap's value (GAIA-A, inner component: the classifier input)
	LossODIN          Loss = 4 // sum_n -log softmax(z_n/T)_{argmax z_n}, T = Pass.LossParam
	LossUniformCE     Loss = 5 // sum_n cross-entropy of softmax(z_n) against the uniform distribution
	LossGate          Loss = 6 // no backward: each tap's ReLU gate mask (gate > 0), reduced like a gradient
)

// Reduce names what a pass hands back for each tap: its gradient G (N x C x
// H x W) reduced on the device, or, for ReducePerturbForward, the logits of
// a second forward.
type Reduce int32

// Reductions (shim.h's GAIA_REDUCE_*). A 2-D gradient is taken as N x C x 1 x 1.
const (
	ReduceNone           Reduce = 0 // the full gradient
	ReduceChannelMean    Reduce = 1 // N x C: spatial mean
	ReduceChannelNonzero Reduce = 2 // N x C: spatial fraction of non-zeros
	ReduceSumSqNonzero   Reduce = 3 // N: sum over channels of (fraction of non-zeros)^2
	ReduceSumSqMean      Reduce = 4 // N: sum over channels of (spatial mean)^2
	ReduceMeanAbsMean    Reduce = 5 // N: mean over channels of |spatial mean|
	ReduceL1             Reduce = 6 // N: sum of |G| per sample
	// ReducePerturbForward, for the input tap alone: x' = x - step_c s with
	// s = +1 where G >= 0 and -1 elsewhere, step_c = Pass.Params[c] (one per
	// input channel); the pass hands back the logits of a forward on x'
	// (an input perturbation on the device).
	ReducePerturbForward Reduce = 7
)

// InputTap is the tap index that names the input batch itself.
const InputTap = -1

// ParamsTap, alone in a pass, takes the gradient of every parameter (a full
// backward, as training does); the result is each parameter's gradient L1 norm.
const ParamsTap = -2

// Pass is one backward pass: the gradient of Loss with respect to each of
// Taps, each handed back as Reduce says.
type Pass struct {
	Loss      Loss
	LossTap   int     // the tap summed by LossSumTap
	LossParam float64 // the temperature of LossODIN
	Taps      []int
	Reduce    Reduce
	Params    []float64 // ReducePerturbForward's steps, one per input channel
}

// Result is what Run returns, all in Go memory.
type Result struct {
	Outputs []*Tensor   // the module's own outputs; Outputs[0] are the logits
	Values  []*Tensor   // the values of the taps asked for, in order
	Grads   [][]*Tensor // Grads[p][i]: pass p's result at its i-th tap
	Heads   []*Tensor   // one per head, in order
}

// HeadKind names a computation a detector makes after the forward, on the
// device, from one value and buffers put there once (shim.h's GAIA_HEAD_*).
type HeadKind int32

// Heads. x is the head's value as N x D (a map N x C x H x W for ASH);
// results are N float64 or N x K float32 logits.
const (
	HeadLinear      HeadKind = 1 // N x K: min(x, Arg[1]) if Arg[0] != 0, times Buf[0]^T, plus Buf[1]
	HeadMahalanobis HeadKind = 2 // N: min_c (x - mu_c)^T P (x - mu_c); Buf[0] means C x D, Buf[1] P (D x D)
	HeadKNN         HeadKind = 3 // N: distance from x/||x|| to its Arg[0]-th nearest row of Buf[0] (unit rows)
	HeadResidual    HeadKind = 4 // N: ||(x - Buf[0]) Buf[1]||, Buf[1] a D x R basis
	HeadASH         HeadKind = 5 // N x K: ASH (Arg[0] 0 s, 1 p, 2 b; Arg[1] percentile), pool, Buf[0]^T, Buf[1]
	HeadKL          HeadKind = 6 // N: min_c KL(softmax(z) || d_c), Buf[0] = log d (C x K); Tap must be TapLogits
	HeadGram        HeadKind = 7 // Buf[0] (D x D float64) += x^T x; an empty result
)

// TapLogits is the tap index that names the logits, for heads.
const TapLogits = -3

// Buffer is a tensor kept on a module's device (Module.PutF32, PutF64).
type Buffer int32

// NoBuffer marks an unused buffer slot of a Head.
const NoBuffer Buffer = -1

// Head is one computation after the forward (HeadKind says what).
type Head struct {
	Kind HeadKind
	Tap  int
	Buf  [4]Buffer
	Arg  [4]float64
}
