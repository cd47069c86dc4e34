package tunnel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// The SECURITY extension still lets an untrusted client list every
// window (QueryTree) and read every window's properties (GetProperty,
// ListProperties: titles, and whatever other clients keep there; X.Org's
// SecurityResourceMask allows read and list access). An untrusted session's
// X11 channels therefore pass through a filter in the requester's client:
// those requests on a window that is neither a root window nor one of the
// session's own are sent as the same request on the root window (the app
// learns nothing of other clients and gets no error to die of), and the
// children QueryTree lists of a root window are only the session's own.

// In both modes the filter also answers QueryExtension for MIT-SHM as
// absent: shared memory cannot cross the tunnel (the sandbox has its own
// IPC namespace, and SSH channels carry no descriptors for MIT-SHM 1.2's
// AttachFd), and an app that believes it has it (Qt 5's raster painting)
// maps windows it never paints.

// SECURITY also lets untrusted clients do anything to each other's
// windows (X.Org checks only untrusted against trusted): two protected
// sessions on one display, an app from each of two peers, could read,
// drive and select events on each other's windows by their ids. The
// filter therefore keeps the core requests about a window or drawable
// (foreignRules) to the root windows and the session's own: one with a
// reply is sent about the root instead, one without is sent as
// NoOperation (same length, so the sequence numbers stay right).

// Core opcodes the filter looks at.
const (
	xOpChangeWindowAttributes = 2
	xOpQueryTree              = 15
	xOpGetProperty            = 20
	xOpListProperties         = 21
	xOpSendEvent              = 25
	xOpQueryExtension         = xQueryExtension
	xOpNoOperation            = 127
)

// foreignRule is what the filter does with a request naming another
// client's window (its id at offset 4, after the header).
type foreignRule byte

const (
	toRoot foreignRule = iota + 1 // has a reply: ask about the root
	drop                          // no reply: NoOperation
)

var foreignRules = map[byte]foreignRule{
	xOpChangeWindowAttributes: drop,   // e.g. selecting its key events
	3:                         toRoot, // GetWindowAttributes
	4:                         drop,   // DestroyWindow
	5:                         drop,   // DestroySubwindows
	6:                         drop,   // ChangeSaveSet
	7:                         drop,   // ReparentWindow
	8:                         drop,   // MapWindow
	9:                         drop,   // MapSubwindows
	10:                        drop,   // UnmapWindow
	11:                        drop,   // UnmapSubwindows
	12:                        drop,   // ConfigureWindow
	13:                        drop,   // CirculateWindow
	14:                        toRoot, // GetGeometry
	xOpQueryTree:              toRoot,
	xOpChangeProperty:         drop,
	xOpDeleteProperty:         drop,
	xOpGetProperty:            toRoot,
	xOpListProperties:         toRoot,
	xOpSendEvent:              drop,
	40:                        toRoot, // TranslateCoordinates (source window)
	61:                        drop,   // ClearArea
	62:                        drop,   // CopyArea (source and destination drawables)
	63:                        drop,   // CopyPlane (source and destination drawables)
	73:                        toRoot, // GetImage (the root's is refused to untrusted clients)
	113:                       drop,   // KillClient
	xOpRotateProperties:       drop,   // (on a root: see cutBuffer)
	// Drawing on another client's window, to fake what it shows.
	64: drop, 65: drop, 66: drop, 67: drop, 68: drop, 69: drop, 70: drop, 71: drop, // PolyPoint ... PolyFillArc
	72: drop,                               // PutImage
	74: drop, 75: drop, 76: drop, 77: drop, // PolyText8/16, ImageText8/16
}

// The SendEvent destinations that are not window ids, and the
// ClientMessage event, which asks the window manager (through the root)
// to act on the window it names.
const (
	xPointerWindow  = 0
	xInputFocus     = 1
	xClientMessage  = 33
	xSendEventEvent = 12 // offset of the event in SendEvent
)

// hiddenExtensions are the extensions the filter says the server lacks.
var hiddenExtensions = map[string]bool{"MIT-SHM": true}

// maxXRequest bounds one request (BIG-REQUESTS allows 16 MiB on X.Org).
const maxXRequest = 64 << 20

// idRange is the resource ids of one X connection: base | (any bits of
// mask).
type idRange struct{ base, mask uint32 }

// x11Owned is what an untrusted session's X connections own: their resource id
// ranges, and the server's root windows.
type x11Owned struct {
	mu     sync.Mutex
	ranges map[idRange]int
	roots  map[uint32]bool
}

func newX11Owned() *x11Owned {
	return &x11Owned{ranges: map[idRange]int{}, roots: map[uint32]bool{}}
}

func (o *x11Owned) add(r idRange, roots []uint32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ranges[r]++
	for _, id := range roots {
		o.roots[id] = true
	}
}

func (o *x11Owned) remove(r idRange) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ranges[r]--; o.ranges[r] <= 0 {
		delete(o.ranges, r)
	}
}

// owned reports whether id was made by one of the session's connections.
func (o *x11Owned) owned(id uint32) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for r := range o.ranges {
		if id&^r.mask == r.base {
			return true
		}
	}
	return false
}

func (o *x11Owned) isRoot(id uint32) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.roots[id]
}

// anyRoot is a root window (the first screen's, as parsed).
func (o *x11Owned) anyRoot() (uint32, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id := range o.roots {
		return id, true
	}
	return 0, false
}

// parseSetupReply reads the resource id range and the screens' root
// windows from a successful connection setup reply (header included).
func parseSetupReply(b []byte, bo binary.ByteOrder) (idRange, []uint32, error) {
	if len(b) < 40 || b[0] != 1 {
		return idRange{}, nil, errors.New("X setup reply: not a success")
	}
	r := idRange{base: bo.Uint32(b[12:]), mask: bo.Uint32(b[16:])}
	vendor := int(bo.Uint16(b[24:]))
	screens, formats := int(b[28]), int(b[29])
	off := 40 + pad4(vendor) + 8*formats
	var roots []uint32
	for i := 0; i < screens; i++ {
		if off+40 > len(b) {
			return r, roots, errors.New("X setup reply: screens cut short")
		}
		roots = append(roots, bo.Uint32(b[off:]))
		depths := int(b[off+39])
		off += 40
		for d := 0; d < depths; d++ {
			if off+8 > len(b) {
				return r, roots, errors.New("X setup reply: depths cut short")
			}
			off += 8 + 24*int(bo.Uint16(b[off+2:]))
		}
	}
	return r, roots, nil
}

// x11Filter is one filtered X11 connection: the app's requests (from the
// channel) and the server's answers.
type x11Filter struct {
	bo binary.ByteOrder
	// owned is nil for a trusted session: its requests about windows go
	// through as they are.
	owned *x11Owned
	mu    sync.Mutex
	seq   uint16   // the last request's sequence number
	trees []uint16 // sequence numbers of QueryTree on a root, in order
	hide  []uint16 // sequence numbers of QueryExtension of a hidden one
}

// relayFiltered relays an untrusted X11 channel (its setup already sent to
// the server) through the filter, then closes both.
func relayFiltered(xc, ch halfCloser, order byte, owned *x11Owned) {
	f := &x11Filter{bo: binary.LittleEndian, owned: owned}
	if order == 'B' {
		f.bo = binary.BigEndian
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		f.requests(xc, ch)
		xc.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		f.answers(ch, xc)
		ch.CloseWrite()
	}()
	wg.Wait()
	xc.Close()
	ch.Close()
}

// flushIfIdle writes out what is buffered once nothing more is waiting to
// be read, so writes are coalesced without adding latency.
func flushIfIdle(w *bufio.Writer, r *bufio.Reader) error {
	if r.Buffered() == 0 {
		return w.Flush()
	}
	return nil
}

// requests copies the app's requests to the server, rewriting those about
// other clients' windows.
func (f *x11Filter) requests(dst io.Writer, src io.Reader) error {
	r := bufio.NewReaderSize(src, 64<<10)
	w := bufio.NewWriterSize(dst, 64<<10)
	defer w.Flush()
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:4]); err != nil {
			return err
		}
		words := int(f.bo.Uint16(hdr[2:]))
		head := 4
		if words == 0 { // BIG-REQUESTS: the length follows
			if _, err := io.ReadFull(r, hdr[4:8]); err != nil {
				return err
			}
			words = int(f.bo.Uint32(hdr[4:]))
			head = 8
		}
		size := words * 4
		if size < head || size > maxXRequest {
			return fmt.Errorf("X request of %d bytes", size)
		}
		f.mu.Lock()
		f.seq++
		seq := f.seq
		f.mu.Unlock()
		op := hdr[0]
		if op == xOpQueryExtension && head == 4 && size >= 8 && size <= 8+256 {
			body := make([]byte, size-head)
			if _, err := io.ReadFull(r, body); err != nil {
				return err
			}
			if n := int(f.bo.Uint16(body[0:])); 4+n <= len(body) && hiddenExtensions[string(body[4:4+n])] {
				f.mu.Lock()
				f.hide = append(f.hide, seq)
				f.mu.Unlock()
			}
			w.Write(hdr[:head])
			w.Write(body)
		} else if rule := foreignRules[op]; f.owned != nil && rule != 0 && size >= head+4 {
			// The ids and SendEvent's event are in the first 40 bytes.
			body := make([]byte, min(size-head, 40))
			if _, err := io.ReadFull(r, body); err != nil {
				return err
			}
			if f.foreign(op, body) {
				if rule == drop {
					hdr[0] = xOpNoOperation
				} else if rid, ok := f.owned.anyRoot(); ok {
					f.bo.PutUint32(body, rid)
				}
			}
			if f.cutBuffer(hdr[0], body) {
				if hdr[0] == xOpGetProperty {
					f.bo.PutUint32(body[4:], xAtomWMTransientFor) // never on a root: absent
				} else {
					hdr[0] = xOpNoOperation
				}
			}
			if hdr[0] == xOpQueryTree && f.owned.isRoot(f.bo.Uint32(body)) {
				f.mu.Lock()
				f.trees = append(f.trees, seq)
				f.mu.Unlock()
			}
			w.Write(hdr[:head])
			w.Write(body)
			if _, err := io.CopyN(w, r, int64(size-head-len(body))); err != nil {
				return err
			}
		} else {
			w.Write(hdr[:head])
			if _, err := io.CopyN(w, r, int64(size-head)); err != nil {
				return err
			}
		}
		if err := flushIfIdle(w, r); err != nil {
			return err
		}
	}
}

// The cut buffers, properties on the root window (predefined atoms
// CUT_BUFFER0 to CUT_BUFFER7), hold what the user last selected in some
// programs (xterm puts every selection into CUT_BUFFER0): a protected
// session neither reads nor writes them.
const (
	xAtomCutBuffer0     = 9
	xAtomCutBuffer7     = 16
	xAtomWMTransientFor = 68
	xOpChangeProperty   = 18
	xOpDeleteProperty   = 19
	xOpRotateProperties = 114
)

// cutBuffer reports whether a request (its body after the header) reads
// or changes a cut buffer.
func (f *x11Filter) cutBuffer(op byte, body []byte) bool {
	if len(body) < 8 || !f.owned.isRoot(f.bo.Uint32(body)) {
		return false
	}
	switch op {
	case xOpGetProperty, xOpChangeProperty, xOpDeleteProperty:
		a := f.bo.Uint32(body[4:])
		return a >= xAtomCutBuffer0 && a <= xAtomCutBuffer7
	case xOpRotateProperties:
		return true
	}
	return false
}

// foreign reports whether a request (its body after the header) is about
// another client's window.
func (f *x11Filter) foreign(op byte, body []byte) bool {
	id := f.bo.Uint32(body)
	other := func(id uint32) bool { return !f.owned.isRoot(id) && !f.owned.owned(id) }
	if op == 62 || op == 63 { // CopyArea, CopyPlane: from and to
		return (id != 0 && other(id)) || (len(body) >= 8 && other(f.bo.Uint32(body[4:])))
	}
	if op != xOpSendEvent {
		return id != 0 && other(id)
	}
	if id == xPointerWindow || id == xInputFocus {
		return true // wherever the pointer or the focus is: maybe not ours
	}
	if other(id) {
		return true
	}
	if len(body) < xSendEventEvent-4+8 {
		return true // cut short: the server refuses it anyway
	}
	// To a root: a ClientMessage about another client's window asks the
	// window manager to act on it (close, raise, move it).
	ev := body[xSendEventEvent-4:]
	if f.owned.isRoot(id) && ev[0]&0x7f == xClientMessage {
		if win := f.bo.Uint32(ev[4:]); win != 0 && other(win) {
			return true
		}
	}
	return false
}

// answers copies the server's setup reply, replies, events and errors to
// the app, registering the connection's resource ids and leaving other
// clients' windows out of QueryTree replies about a root.
func (f *x11Filter) answers(dst io.Writer, src io.Reader) error {
	r := bufio.NewReaderSize(src, 64<<10)
	w := bufio.NewWriterSize(dst, 64<<10)
	defer w.Flush()
	var hdr [8]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		w.Write(hdr[:n]) // what there is, as the server sent it
		return err
	}
	n := int(f.bo.Uint16(hdr[6:])) * 4
	if n > maxSetupReply {
		return fmt.Errorf("X setup reply of %d bytes", n)
	}
	setup := make([]byte, 8+n)
	copy(setup, hdr[:])
	if m, err := io.ReadFull(r, setup[8:]); err != nil {
		w.Write(setup[:8+m])
		return err
	}
	if setup[0] == 1 && f.owned != nil {
		rng, roots, err := parseSetupReply(setup, f.bo)
		if err != nil {
			return err
		}
		f.owned.add(rng, roots)
		defer f.owned.remove(rng)
	}
	w.Write(setup)
	if err := w.Flush(); err != nil {
		return err
	}
	msg := make([]byte, 32)
	for {
		if _, err := io.ReadFull(r, msg[:32]); err != nil {
			return err
		}
		typ := msg[0] &^ 0x80
		extra := 0
		if typ == 1 || typ == 35 { // a reply, a GenericEvent
			extra = int(f.bo.Uint32(msg[4:])) * 4
			if extra > maxXRequest {
				return fmt.Errorf("X reply of %d bytes", extra)
			}
		}
		tree := false
		if typ <= 1 {
			seq := f.bo.Uint16(msg[2:])
			f.mu.Lock()
			if len(f.trees) > 0 && f.trees[0] == seq {
				f.trees = f.trees[1:]
				tree = typ == 1
			}
			if len(f.hide) > 0 && f.hide[0] == seq {
				f.hide = f.hide[1:]
				if typ == 1 {
					msg[8], msg[9], msg[10], msg[11] = 0, 0, 0, 0 // not present
				}
			}
			f.mu.Unlock()
		}
		if tree && extra < 1<<20 {
			full := make([]byte, 32+extra)
			copy(full, msg[:32])
			if _, err := io.ReadFull(r, full[32:]); err != nil {
				return err
			}
			w.Write(f.ownChildren(full))
		} else {
			w.Write(msg[:32])
			if _, err := io.CopyN(w, r, int64(extra)); err != nil {
				return err
			}
		}
		if err := flushIfIdle(w, r); err != nil {
			return err
		}
	}
}

// ownChildren rewrites a QueryTree reply to list only the session's own
// windows.
func (f *x11Filter) ownChildren(b []byte) []byte {
	n := int(f.bo.Uint16(b[16:]))
	if 32+4*n > len(b) {
		return b
	}
	out := append([]byte(nil), b[:32]...)
	kept := 0
	for i := 0; i < n; i++ {
		id := f.bo.Uint32(b[32+4*i:])
		if f.owned.owned(id) {
			out = append(out, 0, 0, 0, 0)
			f.bo.PutUint32(out[len(out)-4:], id)
			kept++
		}
	}
	f.bo.PutUint16(out[16:], uint16(kept))
	f.bo.PutUint32(out[4:], uint32(kept))
	return out
}
