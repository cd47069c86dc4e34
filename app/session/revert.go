package session

// reverter collects the undo of each step of an operation as the step
// succeeds, so that a failure at any later step unwinds exactly what was
// done, newest first (the pattern of Incus's revert package):
//
//	r := newReverter()
//	defer r.Fail()
//	... step one ...; r.Add(undoOne)
//	... step two ...; r.Add(undoTwo)
//	r.Success()
type reverter struct {
	undo []func()
}

func newReverter() *reverter { return &reverter{} }

// Add registers the undo of a step that succeeded.
func (r *reverter) Add(f func()) { r.undo = append(r.undo, f) }

// Fail runs the registered undos, newest first, and forgets them: after
// Success it does nothing.
func (r *reverter) Fail() {
	for i := len(r.undo) - 1; i >= 0; i-- {
		r.undo[i]()
	}
	r.undo = nil
}

// Success keeps what was done: a later Fail does nothing.
func (r *reverter) Success() { r.undo = nil }

// Clone is a reverter with the same undos, for handing them to a caller
// (clone.Fail) before Success.
func (r *reverter) Clone() *reverter {
	return &reverter{undo: append([]func(){}, r.undo...)}
}
