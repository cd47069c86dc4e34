package discovery

// State says whether discovery works, and if not, what it lacks.
type State string

const (
	// StateStarting: connecting to the system bus and avahi-daemon.
	StateStarting State = "starting"
	// StateRunning: publishing and browsing through avahi-daemon.
	StateRunning State = "running"
	// StateNoSystemBus: the system bus cannot be reached.
	StateNoSystemBus State = "no-system-bus"
	// StateNoAvahi: avahi-daemon is not running (nobody owns its bus
	// name); discovery starts by itself when it appears.
	StateNoAvahi State = "no-avahi"
)

// Status is the discovery's state and, when it is off, the error behind it.
type Status struct {
	State State
	Err   string
}

// Status is the current state (StateStarting before Run got anywhere).
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.State == "" {
		return Status{State: StateStarting}
	}
	return s.status
}

// setStatus records the state and tells Options.OnStatus when it changed.
func (s *Service) setStatus(st Status) {
	s.mu.Lock()
	same := s.status == st
	s.status = st
	s.mu.Unlock()
	if !same && s.opts.OnStatus != nil {
		s.opts.OnStatus(st)
	}
}
