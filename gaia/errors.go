package gaia

import (
	"errors"
	"fmt"
)

// Conditions a caller can test with errors.Is.
var (
	// ErrClosed: the Model, Gated or Fitter was closed.
	ErrClosed = errors.New("gaia: closed")
	// ErrUnknownDetector: a detector name that is not in the registry.
	ErrUnknownDetector = errors.New("unknown detector")
	// ErrUnknownSetting: a setting name that no detector declares.
	ErrUnknownSetting = errors.New("unknown setting")
	// ErrNeedsFit: a detector that scores with statistics of
	// in-distribution data (a fit file, made by gaia fit or Model.Fit)
	// was asked for without one.
	ErrNeedsFit = errors.New("needs a fit of in-distribution data")
	// ErrQueueFull: the inputs waiting for a batch would pass
	// Options.Queue; the call was refused at once (back-pressure), not
	// queued. Retrying later may succeed.
	ErrQueueFull = errors.New("the queue is full")
	// ErrNoMetadata: a model without MODEL.json beside it, opened without
	// Options.Input.
	ErrNoMetadata = errors.New("no model metadata")
	// ErrInvalidOptions: an Options field out of its range.
	ErrInvalidOptions = errors.New("invalid options")
	// ErrInvalidGate: a gate missing a required field, or with a value no
	// gate can have.
	ErrInvalidGate = errors.New("invalid gate")
)

// MismatchError is OpenGate's refusal of a gate that was calibrated with
// something other than what it would run with: another model file, another
// fit, other taps or other settings of its detector. Scores under it would be
// compared with a threshold made for other scores.
type MismatchError struct {
	What string // "model", "fit", "taps" or "settings"
	// Gate names the gate: its detector and the scores it was calibrated
	// on.
	Gate string
	// Calibrated is what the gate was calibrated with; Opened is what it
	// would run with.
	Calibrated, Opened string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s differs from the gate's: calibrated with %s, opened with %s", e.What, e.Calibrated, e.Opened)
}

// ImageError is an image of a ScoreImages or Check call that could not be
// decoded or transformed into a model input: the caller's input, not a
// failure of the model.
type ImageError struct {
	Index int // the image's position in the call
	Err   error
}

func (e *ImageError) Error() string { return fmt.Sprintf("image %d: %v", e.Index, e.Err) }

func (e *ImageError) Unwrap() error { return e.Err }

// InputError is a tensor input of ScoreTensor with the wrong size, or a call
// with no inputs or more than a queue can hold.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }
