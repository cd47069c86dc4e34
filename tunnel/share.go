package tunnel

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/sys/unix"
)

// Share is something the requester brings into a session: a folder, or a
// set of chosen files, served to the sandbox over SFTP (ServeShare) and
// mounted there under Name. Nothing outside it is served: a folder's
// paths are resolved through os.Root (no `..` or symlink out of it), a
// set of files serves exactly those files; symlinks, device files,
// sockets and FIFOs are neither listed nor opened, and symlinks and
// hard links cannot be made.
type Share struct {
	// Name is the directory it appears as in the sandbox (one path
	// element, e.g. "alice's Pictures").
	Name string
	// Dir is a folder share's directory here; Files a file share's files
	// (absolute paths here; each appears under its base name, made unique
	// as in FileNames).
	Dir   string
	Files []string
	// ReadOnly refuses every change.
	ReadOnly bool
}

// FileNames are the names the files of a file share appear under: their
// base names, a later duplicate as "name (2).ext".
func FileNames(files []string) []string {
	seen := map[string]bool{}
	out := make([]string, len(files))
	for i, f := range files {
		base := filepath.Base(f)
		name := base
		ext := filepath.Ext(base)
		for n := 2; seen[name]; n++ {
			name = fmt.Sprintf("%s (%d)%s", strings.TrimSuffix(base, ext), n, ext)
		}
		seen[name] = true
		out[i] = name
	}
	return out
}

// ShareOwner is the uid and gid the served files are shown as owned by
// (the sandbox's guest): the requester's own ids mean nothing there.
var ShareOwner = [2]uint32{1000, 1000}

// shareMaxTxPacket is the largest read the server answers (sshfs asks
// for up to 64 KiB at a time).
const shareMaxTxPacket = 256 << 10

// ServeShare serves sh over SFTP on rw until it closes, refusing (and
// logging) every request for something outside sh.
func ServeShare(rw io.ReadWriteCloser, sh Share, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	h, err := newShareFS(sh, log)
	if err != nil {
		rw.Close()
		return err
	}
	defer h.close()
	srv := sftp.NewRequestServer(rw, sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h},
		sftp.WithRSAllocator(), sftp.WithRSMaxTxPacket(shareMaxTxPacket))
	err = srv.Serve()
	srv.Close()
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	log.Info("shared files closed", "share", sh.Name, "refused", h.refused.Load())
	return err
}

// shareFS implements the request server's handlers for one Share.
type shareFS struct {
	sh      Share
	log     *slog.Logger
	root    *os.Root             // a folder share
	files   map[string]sharedOne // a file share, by name
	names   []string             // a file share's names, in order
	since   time.Time
	refused atomic.Int64
}

// sharedOne is a chosen file: its path and identity when it was chosen.
type sharedOne struct {
	path     string
	dev, ino uint64
}

func newShareFS(sh Share, log *slog.Logger) (*shareFS, error) {
	h := &shareFS{sh: sh, log: log.With("share", sh.Name), since: time.Now()}
	switch {
	case sh.Dir != "" && len(sh.Files) == 0:
		r, err := os.OpenRoot(sh.Dir)
		if err != nil {
			return nil, fmt.Errorf("sharing %s: %w", sh.Dir, err)
		}
		h.root = r
	case sh.Dir == "" && len(sh.Files) > 0:
		h.files = map[string]sharedOne{}
		names := FileNames(sh.Files)
		for i, f := range sh.Files {
			// The file chosen is what is served: a symlink chosen is its
			// target, fixed now.
			p, err := filepath.EvalSymlinks(f)
			if err != nil {
				return nil, fmt.Errorf("sharing %s: %w", f, err)
			}
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				return nil, fmt.Errorf("sharing %s: %w", f, err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFREG {
				return nil, fmt.Errorf("sharing %s: not a regular file", f)
			}
			h.files[names[i]] = sharedOne{path: p, dev: st.Dev, ino: st.Ino}
			h.names = append(h.names, names[i])
		}
	default:
		return nil, errors.New("a share is a folder or a set of files")
	}
	return h, nil
}

func (h *shareFS) close() {
	if h.root != nil {
		h.root.Close()
	}
}

// refuse logs a refused request and returns the error the client gets.
func (h *shareFS) refuse(op, p, why string) error {
	h.refused.Add(1)
	h.log.Warn("refused a request for something not shared", "op", op, "path", p, "why", why)
	return sftp.ErrSSHFxPermissionDenied
}

// rel is a request path inside a folder share ("." for its top).
func rel(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return "."
	}
	return p
}

// escapes reports whether err is os.Root's refusal of a path leaving it.
func escapes(err error) bool {
	return err != nil && strings.Contains(err.Error(), "escapes from parent")
}

// fsErr maps an error of the folder's file system to the client's, logging
// the refusal of paths that leave the share.
func (h *shareFS) fsErr(op, p string, err error) error {
	if escapes(err) {
		return h.refuse(op, p, "it leads outside the shared folder")
	}
	if errors.Is(err, syscall.ELOOP) {
		return h.refuse(op, p, "a symlink")
	}
	return err
}

// allowedMode reports whether a file of mode m may be served: regular
// files and directories only.
func allowedMode(m fs.FileMode) bool { return m.IsRegular() || m.IsDir() }

func modeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeDevice != 0:
		return "a device file"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	}
	return "not a regular file or directory"
}

// stat is what the folder share serves at p: the file, a symlink inside
// the folder followed, anything else refused.
func (h *shareFS) stat(op, p string) (os.FileInfo, error) {
	if h.root == nil {
		return h.fileStat(op, p)
	}
	fi, err := h.root.Stat(rel(p))
	if err != nil {
		return nil, h.fsErr(op, p, err)
	}
	if !allowedMode(fi.Mode()) {
		return nil, h.refuse(op, p, modeName(fi.Mode()))
	}
	return h.info(fi, rel(p) == "."), nil
}

// fileStat is a file share's stat: its top directory or one of its files.
func (h *shareFS) fileStat(op, p string) (os.FileInfo, error) {
	r := rel(p)
	if r == "." {
		mode := fs.ModeDir | 0o755
		if h.sh.ReadOnly {
			mode = fs.ModeDir | 0o555
		}
		return &shareInfo{name: "/", mode: mode, mtime: h.since}, nil
	}
	one, ok := h.files[r]
	if !ok {
		return nil, os.ErrNotExist // nothing else is there, whatever is beside the files here
	}
	f, err := h.openOne(op, p, one, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return h.info(namedInfo{fi, r}, false), nil
}

// openOne opens a shared file, refusing it when it is no longer the file
// chosen (replaced by another file or a symlink since).
func (h *shareFS) openOne(op, p string, one sharedOne, flag int) (*os.File, error) {
	f, err := os.OpenFile(one.path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, h.refuse(op, p, "the shared file was replaced by a symlink")
		}
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Dev != one.dev || st.Ino != one.ino || st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return nil, h.refuse(op, p, "the shared file was replaced by another")
	}
	return f, nil
}

// info is fi as the sandbox sees it: owned by the guest, without write
// permission in a read-only share, and without set-id bits.
func (h *shareFS) info(fi os.FileInfo, top bool) os.FileInfo {
	mode := fi.Mode() & (fs.ModeDir | fs.ModePerm)
	if h.sh.ReadOnly {
		mode &^= 0o222
	}
	name := fi.Name()
	if top {
		name = "/"
	}
	return &shareInfo{name: name, size: fi.Size(), mode: mode, mtime: fi.ModTime(), atime: atimeOf(fi)}
}

func atimeOf(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Atim.Unix())
	}
	return fi.ModTime()
}

// shareInfo is a served file's attributes (os.FileInfo with the guest's
// ids, see sftp.FileInfoUidGid).
type shareInfo struct {
	name         string
	size         int64
	mode         fs.FileMode
	mtime, atime time.Time
}

func (i *shareInfo) Name() string       { return i.name }
func (i *shareInfo) Size() int64        { return i.size }
func (i *shareInfo) Mode() fs.FileMode  { return i.mode }
func (i *shareInfo) ModTime() time.Time { return i.mtime }
func (i *shareInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *shareInfo) Sys() any           { return nil }
func (i *shareInfo) Uid() uint32        { return ShareOwner[0] }
func (i *shareInfo) Gid() uint32        { return ShareOwner[1] }

// namedInfo renames a FileInfo.
type namedInfo struct {
	os.FileInfo
	name string
}

func (n namedInfo) Name() string { return n.name }

// open opens p for the flags asked, checking what it is before and after.
func (h *shareFS) open(op string, r *sftp.Request, flag int) (*os.File, error) {
	p := r.Filepath
	write := flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC) != 0
	if write && h.sh.ReadOnly {
		return nil, h.refuse(op, p, "the share is read-only")
	}
	if h.root == nil {
		one, ok := h.files[rel(p)]
		if !ok {
			return nil, h.refuse(op, p, "not one of the shared files")
		}
		return h.openOne(op, p, one, flag&^(os.O_CREATE|os.O_EXCL))
	}
	name := rel(p)
	if fi, err := h.root.Lstat(name); err == nil {
		if fi.Mode()&fs.ModeSymlink != 0 {
			// Followed, if it stays inside the folder.
			if fi, err = h.root.Stat(name); err != nil {
				return nil, h.fsErr(op, p, err)
			}
		}
		if !fi.Mode().IsRegular() {
			return nil, h.refuse(op, p, modeName(fi.Mode()))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, h.fsErr(op, p, err)
	}
	perm := fs.FileMode(0o644)
	if a := r.AttrFlags(); a.Permissions {
		perm = r.Attributes().FileMode().Perm()
	}
	f, err := h.root.OpenFile(name, flag|unix.O_NONBLOCK|unix.O_NOCTTY, perm)
	if err != nil {
		return nil, h.fsErr(op, p, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, err
		}
		return nil, h.refuse(op, p, modeName(fi.Mode()))
	}
	return f, nil
}

func openFlags(r *sftp.Request) int {
	pf := r.Pflags()
	flag := os.O_RDONLY
	switch {
	case pf.Read && (pf.Write || pf.Append):
		flag = os.O_RDWR
	case pf.Write || pf.Append:
		flag = os.O_WRONLY
	}
	if pf.Creat {
		flag |= os.O_CREATE
	}
	if pf.Trunc {
		flag |= os.O_TRUNC
	}
	if pf.Excl {
		flag |= os.O_EXCL
	}
	// Append is the client's: it writes at the offsets it wants.
	return flag
}

// Fileread serves reads (FileReader).
func (h *shareFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	return h.open("read", r, os.O_RDONLY)
}

// Filewrite serves write-only opens (FileWriter).
func (h *shareFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	flag := openFlags(r)
	if flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		flag |= os.O_WRONLY
	}
	return h.open("write", r, flag)
}

// OpenFile serves read-write opens (OpenFileWriter).
func (h *shareFS) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	return h.open("open", r, openFlags(r)|os.O_RDWR)
}

// Filecmd serves the changes (FileCmder).
func (h *shareFS) Filecmd(r *sftp.Request) error {
	p := r.Filepath
	switch r.Method {
	case "Symlink", "Link":
		return h.refuse(strings.ToLower(r.Method), p, "links cannot be made in a share")
	}
	if h.sh.ReadOnly {
		return h.refuse(strings.ToLower(r.Method), p, "the share is read-only")
	}
	if h.root == nil {
		if r.Method == "Setstat" {
			return h.setstatOne(r)
		}
		return h.refuse(strings.ToLower(r.Method), p, "only the shared files themselves can be changed")
	}
	name := rel(p)
	switch r.Method {
	case "Setstat":
		return h.setstat(r, name)
	case "Rename":
		if _, err := h.root.Lstat(rel(r.Target)); err == nil {
			return sftp.ErrSSHFxFailure // SFTP's rename does not replace
		}
		return h.rename(r)
	case "Rmdir":
		if name == "." {
			return h.refuse("rmdir", p, "the shared folder itself")
		}
		fi, err := h.root.Lstat(name)
		if err != nil {
			return h.fsErr("rmdir", p, err)
		}
		if !fi.IsDir() {
			return syscall.ENOTDIR
		}
		return h.fsErr("rmdir", p, h.root.Remove(name))
	case "Remove":
		fi, err := h.root.Lstat(name)
		if err != nil {
			return h.fsErr("remove", p, err)
		}
		if fi.IsDir() {
			return syscall.EISDIR
		}
		return h.fsErr("remove", p, h.root.Remove(name))
	case "Mkdir":
		perm := fs.FileMode(0o755)
		if r.AttrFlags().Permissions {
			perm = r.Attributes().FileMode().Perm()
		}
		return h.fsErr("mkdir", p, h.root.Mkdir(name, perm))
	}
	return sftp.ErrSSHFxOpUnsupported
}

// PosixRename is rename replacing the target (PosixRenameFileCmder).
func (h *shareFS) PosixRename(r *sftp.Request) error {
	if h.sh.ReadOnly {
		return h.refuse("rename", r.Filepath, "the share is read-only")
	}
	if h.root == nil {
		return h.refuse("rename", r.Filepath, "only the shared files themselves can be changed")
	}
	return h.rename(r)
}

func (h *shareFS) rename(r *sftp.Request) error {
	from, to := rel(r.Filepath), rel(r.Target)
	if from == "." || to == "." {
		return h.refuse("rename", r.Filepath, "the shared folder itself")
	}
	fi, err := h.root.Lstat(from)
	if err != nil {
		return h.fsErr("rename", r.Filepath, err)
	}
	if !allowedMode(fi.Mode()) {
		return h.refuse("rename", r.Filepath, modeName(fi.Mode()))
	}
	if err := h.root.Rename(from, to); err != nil {
		return h.fsErr("rename", r.Filepath+" -> "+r.Target, err)
	}
	return nil
}

func (h *shareFS) setstat(r *sftp.Request, name string) error {
	p := r.Filepath
	fi, err := h.root.Stat(name)
	if err != nil {
		return h.fsErr("setstat", p, err)
	}
	if !allowedMode(fi.Mode()) {
		return h.refuse("setstat", p, modeName(fi.Mode()))
	}
	a, attrs := r.AttrFlags(), r.Attributes()
	if a.Size {
		if fi.IsDir() {
			return syscall.EISDIR
		}
		f, err := h.open("truncate", r, os.O_WRONLY)
		if err != nil {
			return err
		}
		err = f.Truncate(int64(attrs.Size))
		f.Close()
		if err != nil {
			return err
		}
	}
	if a.Permissions {
		if err := h.root.Chmod(name, attrs.FileMode().Perm()); err != nil {
			return h.fsErr("chmod", p, err)
		}
	}
	if a.Acmodtime {
		if err := h.root.Chtimes(name, attrs.AccessTime(), attrs.ModTime()); err != nil {
			return h.fsErr("chtimes", p, err)
		}
	}
	return nil // owners are not changed
}

func (h *shareFS) setstatOne(r *sftp.Request) error {
	p := r.Filepath
	one, ok := h.files[rel(p)]
	if !ok {
		return h.refuse("setstat", p, "not one of the shared files")
	}
	f, err := h.openOne("setstat", p, one, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	a, attrs := r.AttrFlags(), r.Attributes()
	if a.Size {
		w, err := h.openOne("truncate", p, one, os.O_WRONLY)
		if err != nil {
			return err
		}
		err = w.Truncate(int64(attrs.Size))
		w.Close()
		if err != nil {
			return err
		}
	}
	if a.Permissions {
		if err := f.Chmod(attrs.FileMode().Perm()); err != nil {
			return err
		}
	}
	if a.Acmodtime {
		ts := []unix.Timespec{unix.NsecToTimespec(attrs.AccessTime().UnixNano()), unix.NsecToTimespec(attrs.ModTime().UnixNano())}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), ts, 0); err != nil {
			return err
		}
	}
	return nil
}

// StatVFS answers df (StatVFSFileCmder).
func (h *shareFS) StatVFS(r *sftp.Request) (*sftp.StatVFS, error) {
	var st unix.Statfs_t
	var err error
	if h.root != nil {
		var d *os.File
		if d, err = h.root.Open("."); err == nil {
			err = unix.Fstatfs(int(d.Fd()), &st)
			d.Close()
		}
	} else {
		err = unix.Statfs(h.files[h.names[0]].path, &st)
	}
	if err != nil {
		return nil, err
	}
	return &sftp.StatVFS{Bsize: uint64(st.Bsize), Frsize: uint64(st.Frsize), Blocks: st.Blocks, Bfree: st.Bfree,
		Bavail: st.Bavail, Files: st.Files, Ffree: st.Ffree, Favail: st.Ffree, Namemax: uint64(st.Namelen)}, nil
}

// Filelist serves listings and stat (FileLister).
func (h *shareFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	p := r.Filepath
	switch r.Method {
	case "Stat":
		fi, err := h.stat("stat", p)
		if err != nil {
			return nil, err
		}
		return listerAt{fi}, nil
	case "Readlink":
		return nil, h.refuse("readlink", p, "a share has no symlinks")
	case "List":
		return h.list(p)
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat is Stat: symlinks inside a folder are served as what they point
// to (LstatFileLister).
func (h *shareFS) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	fi, err := h.stat("lstat", r.Filepath)
	if err != nil {
		return nil, err
	}
	return listerAt{fi}, nil
}

// RealPath is the cleaned absolute path (RealPathFileLister).
func (h *shareFS) RealPath(p string) (string, error) { return path.Clean("/" + p), nil }

func (h *shareFS) list(p string) (sftp.ListerAt, error) {
	if h.root == nil {
		if rel(p) != "." {
			return nil, syscall.ENOTDIR
		}
		var out listerAt
		for _, n := range h.names {
			if fi, err := h.fileStat("list", "/"+n); err == nil {
				out = append(out, fi)
			}
		}
		return out, nil
	}
	name := rel(p)
	fi, err := h.root.Stat(name)
	if err != nil {
		return nil, h.fsErr("list", p, err)
	}
	if !fi.IsDir() {
		return nil, syscall.ENOTDIR
	}
	d, err := h.root.Open(name)
	if err != nil {
		return nil, h.fsErr("list", p, err)
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	var out listerAt
	for _, e := range entries {
		child := path.Join(name, e.Name())
		fi, err := h.root.Stat(child)
		if err != nil || !allowedMode(fi.Mode()) {
			// Hidden: a symlink out of the folder, a device file, ...
			if err == nil {
				h.log.Debug("not listing", "path", "/"+child, "why", modeName(fi.Mode()))
			} else {
				h.log.Debug("not listing", "path", "/"+child, "why", err)
			}
			continue
		}
		out = append(out, h.info(namedInfo{fi, e.Name()}, false))
	}
	return out, nil
}

// listerAt is a fixed listing.
type listerAt []os.FileInfo

func (l listerAt) ListAt(dst []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[off:])
	if n < len(dst) {
		return n, io.EOF
	}
	return n, nil
}
