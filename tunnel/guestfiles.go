package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// FilesChannelType is the SSH channel an endpoint opens to its client
// for one share the requester brings (as it opens "x11" channels): the
// payload names the share by its index in the session's list, the
// client serves it over SFTP (ServeShare) on the channel.
const FilesChannelType = "ebrainpool-files@ebrainpool.github.io"

// filesChannelOpen is the payload of a files channel open.
type filesChannelOpen struct{ Index uint32 }

// GuestShare is a share mounted for the endpoint by the privileged
// stage (see GuestMountMain, TakeGuestShares): a FUSE connection waiting
// for its server.
type GuestShare struct {
	Index    int    // in the session's list of shares (the client's)
	Path     string // the mount point
	ReadOnly bool
	FUSE     *os.File // the connection (/dev/fuse)
}

// DefaultSSHFS is the FUSE server of the shares: Debian's sshfs reads
// SFTP on its stdin and stdout (-o passive) and serves a mount made
// beforehand (the mount point /dev/fd/N).
const DefaultSSHFS = "sshfs"

// shareReadyTimeout bounds how long a share may take to answer its first
// request before the app starts.
const shareReadyTimeout = 15 * time.Second

// startShares serves each mounted share through sshfs over a files
// channel to the client and waits until each answers; the returned stop
// ends them. On error nothing is left running.
func (s *endpointSession) startShares() (stop func(), err error) {
	var wg sync.WaitGroup
	var cmds []*exec.Cmd
	var chans []ssh.Channel
	stop = func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGTERM)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			for _, c := range cmds {
				c.Process.Kill()
			}
			for _, ch := range chans {
				ch.Close()
			}
			<-done
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	sshfs := s.cfg.SSHFS
	if sshfs == "" {
		sshfs = DefaultSSHFS
	}
	for _, sh := range s.cfg.Shares {
		ch, reqs, err := s.sconn.OpenChannel(FilesChannelType, ssh.Marshal(filesChannelOpen{Index: uint32(sh.Index)}))
		if err != nil {
			return stop, fmt.Errorf("bringing %s: the requester did not serve it: %w", sh.Path, err)
		}
		go ssh.DiscardRequests(reqs)
		chans = append(chans, ch)
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			ch.Close()
			return stop, fmt.Errorf("bringing %s: %w", sh.Path, err)
		}
		ours, theirs := os.NewFile(uintptr(fds[0]), "sftp"), os.NewFile(uintptr(fds[1]), "sshfs-stdio")
		// Read-only is the mount's (MS_RDONLY) and the requester's.
		opts := "passive,attr_timeout=1,entry_timeout=1"
		cmd := exec.Command(sshfs, "-f", "-o", opts, "ebrainpool:/", "/dev/fd/3")
		cmd.Stdin, cmd.Stdout = theirs, theirs
		stderr, _ := cmd.StderrPipe()
		cmd.ExtraFiles = []*os.File{sh.FUSE}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		theirs.Close()
		sh.FUSE.Close() // sshfs's now: the mount ends with it
		if err != nil {
			ours.Close()
			ch.Close()
			return stop, fmt.Errorf("bringing %s: starting %s: %w", sh.Path, sshfs, err)
		}
		cmds = append(cmds, cmd)
		conn, cerr := net.FileConn(ours)
		ours.Close()
		log := s.log.With("share", sh.Path)
		wg.Add(2)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				log.Info("sshfs", "said", sc.Text())
			}
			err := cmd.Wait()
			log.Info("share closed", "err", err)
		}()
		go func() {
			defer wg.Done()
			if cerr != nil {
				ch.Close()
				return
			}
			relay(conn.(halfCloser), ch)
		}()
		log.Info("bringing share", "pid", cmd.Process.Pid, "read_only", sh.ReadOnly)
	}
	// Each answers before the app starts (the first request waits for
	// sshfs's SFTP handshake and the kernel's FUSE_INIT).
	for _, sh := range s.cfg.Shares {
		if err := statWithin(s.ctx, sh.Path, shareReadyTimeout); err != nil {
			return stop, fmt.Errorf("bringing %s: %w", sh.Path, err)
		}
	}
	return stop, nil
}

// statWithin stats p, giving up after d.
func statWithin(ctx context.Context, p string, d time.Duration) error {
	done := make(chan error, 1)
	go func() {
		_, err := os.Stat(p)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return errors.New("no answer from the requester in time")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serveClientFiles serves the shares the endpoint asks for, each on its
// own channel.
func serveClientFiles(ctx context.Context, chans <-chan ssh.NewChannel, shares []Share, log *slog.Logger) {
	var wg sync.WaitGroup
	defer wg.Wait()
	served := map[uint32]bool{}
	for nc := range chans {
		var p filesChannelOpen
		if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil || int(p.Index) >= len(shares) || served[p.Index] {
			log.Warn("refused a files channel", "index", p.Index, "shares", len(shares))
			nc.Reject(ssh.Prohibited, "no such share")
			continue
		}
		served[p.Index] = true
		ch, reqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go ssh.DiscardRequests(reqs)
		sh := shares[p.Index]
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := context.AfterFunc(ctx, func() { ch.Close() })
			defer stop()
			log.Info("serving shared files", "share", sh.Name, "read_only", sh.ReadOnly)
			if err := ServeShare(ch, sh, log); err != nil {
				log.Warn("shared files", "share", sh.Name, "err", err)
			}
		}()
	}
}
