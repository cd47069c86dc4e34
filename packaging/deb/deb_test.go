// Package deb_test builds the Debian package and checks what a user gets:
// its metadata, files and lintian's verdict; that it installs, runs,
// upgrades and purges cleanly in a minimal Debian 12; its maintainer
// scripts' purge logic; the AppArmor profile with a real AppArmor 4 parser.
package deb_test

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

const appID = "io.github.ebrainpool.EBrainPool"

var (
	buildOnce sync.Once
	builtDeb  string // path of the .deb, once built
	builtDir  string // its extracted tree
	buildErr  error
	buildTime time.Duration
	workDir   string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if workDir != "" {
		os.RemoveAll(workDir)
	}
	os.Exit(code)
}

// debPackage builds the package once per test run (build.sh, as make deb
// does) and returns the .deb and its extracted tree.
func debPackage(t *testing.T) (deb, tree string) {
	t.Helper()
	testenv.RequireTools(t, "dpkg-buildpackage", "dh", "dpkg-deb", "go")
	buildOnce.Do(func() {
		workDir, buildErr = os.MkdirTemp("", "ebp-deb-")
		if buildErr != nil {
			return
		}
		start := time.Now()
		out, err := exec.Command("./build.sh", filepath.Join(workDir, "out")).CombinedOutput()
		buildTime = time.Since(start)
		if err != nil {
			buildErr = fmt.Errorf("build.sh: %v\n%s", err, tail(out, 60))
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		builtDeb = lines[len(lines)-1]
		builtDir = filepath.Join(workDir, "tree")
		if out, err := exec.Command("dpkg-deb", "-x", builtDeb, builtDir).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("dpkg-deb -x: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtDeb, builtDir
}

func version(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "FyneApp.toml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Version = "(.*)"$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no Version in FyneApp.toml")
	}
	return string(m[1])
}

func field(t *testing.T, deb, name string) string {
	t.Helper()
	out, err := exec.Command("dpkg-deb", "-f", deb, name).Output()
	if err != nil {
		t.Fatalf("dpkg-deb -f %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// relations splits a Depends-style field into its alternatives' package
// names: [["libc6"], ["liblxc1"], ...].
func relations(s string) [][]string {
	var out [][]string
	for _, rel := range strings.Split(s, ",") {
		var alts []string
		for _, alt := range strings.Split(rel, "|") {
			if f := strings.Fields(alt); len(f) > 0 {
				alts = append(alts, strings.SplitN(f[0], ":", 2)[0])
			}
		}
		if len(alts) > 0 {
			out = append(out, alts)
		}
	}
	return out
}

func TestDebPackage(t *testing.T) {
	deb, tree := debPackage(t)
	t.Logf("built %s in %s", deb, buildTime.Round(time.Second))
	ver := version(t)
	if want := fmt.Sprintf("ebrainpool_%s_", ver); !strings.HasPrefix(filepath.Base(deb), want) {
		t.Errorf("package file %s, want %s*.deb", deb, want)
	}
	if got := field(t, deb, "Version"); got != ver {
		t.Errorf("Version %q, want FyneApp.toml's %q", got, ver)
	}

	depends := field(t, deb, "Depends")
	t.Logf("Depends: %s", depends)
	t.Logf("Recommends: %s", field(t, deb, "Recommends"))
	deps := map[string]bool{}
	for _, alts := range relations(depends) {
		if len(alts) > 1 {
			t.Errorf("Depends has an alternative %q: %s", strings.Join(alts, " | "), depends)
		}
		deps[alts[0]] = true
	}
	for _, want := range []string{"libc6", "libgl1", "libx11-6", "libxcursor1", "libxrandr2", "libxinerama1",
		"libxi6", "libxxf86vm1", "liblxc1", "liblxc-common", "uidmap"} {
		if !deps[want] {
			t.Errorf("Depends lacks %s: %s", want, depends)
		}
	}
	if deps["lxc"] {
		t.Errorf("Depends names the whole lxc package: %s", depends)
	}
	var recs []string
	for _, alts := range relations(field(t, deb, "Recommends")) {
		recs = append(recs, strings.Join(alts, "|"))
	}
	if got, want := strings.Join(recs, ", "), "avahi-daemon, xauth, dbus-user-session, pkexec, apparmor, xpra"; got != want {
		t.Errorf("Recommends %q, want %q", got, want)
	}

	contents, err := exec.Command("dpkg-deb", "--contents", deb).Output()
	if err != nil {
		t.Fatalf("dpkg-deb --contents: %v", err)
	}
	for _, want := range []string{
		"-rwxr-xr-x root/root .* ./usr/bin/ebrainpool\n",
		"./usr/share/applications/" + appID + ".desktop\n",
		"./usr/share/applications/" + appID + ".Open.desktop\n",
		"./usr/share/metainfo/" + appID + ".metainfo.xml\n",
		"./usr/share/icons/hicolor/scalable/apps/" + appID + ".svg\n",
		"./usr/share/icons/hicolor/32x32/apps/" + appID + ".png\n",
		"./usr/share/icons/hicolor/256x256/apps/" + appID + ".png\n",
		"./usr/share/man/man1/ebrainpool.1.gz\n",
		"./usr/share/doc/ebrainpool/copyright\n",
		"./usr/share/doc/ebrainpool/changelog.gz\n",
		"./usr/share/doc/ebrainpool/README.md.gz\n",
		"./usr/share/polkit-1/actions/" + appID + ".policy\n",
		"-rw-r--r-- root/root .* ./usr/share/ebrainpool/apparmor/ebrainpool\n",
		"./usr/share/bash-completion/completions/ebrainpool\n",
		"./usr/share/zsh/vendor-completions/_ebrainpool\n",
		"./usr/share/fish/vendor_completions.d/ebrainpool.fish\n",
	} {
		if !regexp.MustCompile(want).Match(contents) {
			t.Errorf("package lacks %s", strings.TrimSpace(want))
		}
	}
	if bytes.Contains(contents, []byte("./etc/apparmor.d")) {
		t.Errorf("package ships a file in /etc/apparmor.d (Debian 12's AppArmor cannot parse it):\n%s", contents)
	}

	// The shipped AppArmor profile and policy are the repository's.
	for src, dst := range map[string]string{
		"apparmor/ebrainpool":                     "usr/share/ebrainpool/apparmor/ebrainpool",
		appID + ".policy":                         "usr/share/polkit-1/actions/" + appID + ".policy",
		"../../assets/" + appID + ".desktop":      "usr/share/applications/" + appID + ".desktop",
		"../../assets/" + appID + ".Open.desktop": "usr/share/applications/" + appID + ".Open.desktop",
		"../../assets/" + appID + ".metainfo.xml": "usr/share/metainfo/" + appID + ".metainfo.xml",
	} {
		a, _ := os.ReadFile(src)
		b, err := os.ReadFile(filepath.Join(tree, dst))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("/%s differs from packaging/deb/%s (%v)", dst, src, err)
		}
	}

	// The binary: a PIE, full RELRO (relro + bind now), and it runs.
	bin := filepath.Join(tree, "usr/bin/ebrainpool")
	checkHardened(t, bin)
	if help, err := exec.Command(bin, "--help").CombinedOutput(); err != nil || !strings.Contains(string(help), "sandbox start") {
		t.Errorf("packaged binary --help: %v\n%s", err, help)
	}

	// The manual page, copyright and changelog.
	man := gunzip(t, filepath.Join(tree, "usr/share/man/man1/ebrainpool.1.gz"))
	if !strings.Contains(man, `.TH EBRAINPOOL 1 `) || !strings.Contains(man, `"eBrainPool `+ver+`"`) {
		t.Errorf("manual page header wrong:\n%.300s", man)
	}
	cp, err := os.ReadFile(filepath.Join(tree, "usr/share/doc/ebrainpool/copyright"))
	if err != nil || !bytes.HasPrefix(cp, []byte("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")) {
		t.Errorf("copyright is not DEP-5 (%v):\n%.200s", err, cp)
	}
	chl := filepath.Join(t.TempDir(), "changelog")
	os.WriteFile(chl, []byte(gunzip(t, filepath.Join(tree, "usr/share/doc/ebrainpool/changelog.gz"))), 0o644)
	if out, err := exec.Command("dpkg-parsechangelog", "-l", chl, "-S", "Version").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != ver {
		t.Errorf("changelog: dpkg-parsechangelog says %q (%v), want version %s", out, err, ver)
	}

	// Maintainer scripts: complete (no template token left), valid sh.
	ctl := filepath.Join(t.TempDir(), "control")
	if out, err := exec.Command("dpkg-deb", "-e", deb, ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		b, err := os.ReadFile(filepath.Join(ctl, s))
		if err != nil {
			t.Errorf("no %s: %v", s, err)
			continue
		}
		if m := regexp.MustCompile(`#(EBP_[A-Z0-9_]+|DEBHELPER)#`).Find(b); m != nil {
			t.Errorf("%s still has %s", s, m)
		}
		if !bytes.Contains(b, []byte("ebp_purge()")) {
			t.Errorf("%s lacks the inlined maintscript.sh functions", s)
		}
		if out, err := exec.Command("sh", "-n", filepath.Join(ctl, s)).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", s, err, out)
		}
	}
	postrm, _ := os.ReadFile(filepath.Join(ctl, "postrm"))
	if want := "apparmor_sha256=" + sha256File(t, "apparmor/ebrainpool") + "\n"; !bytes.Contains(postrm, []byte(want)) {
		t.Errorf("postrm lacks %q", want)
	}
}

func checkHardened(t *testing.T, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Type != elf.ET_DYN {
		t.Errorf("%s is %v, want a PIE (ET_DYN)", bin, f.Type)
	}
	relro := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_GNU_RELRO {
			relro = true
		}
	}
	if !relro {
		t.Errorf("%s has no GNU_RELRO segment", bin)
	}
	flags, _ := f.DynValue(elf.DT_FLAGS)
	flags1, _ := f.DynValue(elf.DT_FLAGS_1)
	if !hasFlag(flags, uint64(elf.DF_BIND_NOW)) && !hasFlag(flags1, uint64(elf.DF_1_NOW)) {
		t.Errorf("%s is not linked with -z now (DT_FLAGS %v, DT_FLAGS_1 %v)", bin, flags, flags1)
	}
	if !hasFlag(flags1, uint64(elf.DF_1_PIE)) {
		t.Errorf("%s lacks DF_1_PIE (DT_FLAGS_1 %v)", bin, flags1)
	}
	if out, err := exec.Command("file", "-b", bin).Output(); err == nil && !strings.Contains(string(out), "pie executable") {
		t.Errorf("file says %s", out)
	}
}

func hasFlag(vals []uint64, f uint64) bool {
	for _, v := range vals {
		if v&f != 0 {
			return true
		}
	}
	return false
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(out))[0]
}

// TestDebLintian: lintian finds no error and no warning, and every
// override is justified by a comment.
func TestDebLintian(t *testing.T) {
	testenv.RequireTools(t, "lintian")
	deb, _ := debPackage(t)
	cmd := exec.Command("lintian", "--fail-on", "error,warning", "--display-info", "--display-experimental", "--pedantic", "--show-overrides", deb)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("lintian (info and pedantic tags shown, only errors and warnings fail):\n%s", stdout.String())
	if err != nil {
		t.Errorf("lintian --fail-on error,warning: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		}
	}
	overrides, err := os.ReadFile("debian/ebrainpool.lintian-overrides")
	if os.IsNotExist(err) {
		return
	}
	prevComment := false
	for _, l := range strings.Split(string(overrides), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "#"):
			prevComment = true
		case l == "":
		default:
			if !prevComment {
				t.Errorf("lintian override without a comment justifying it: %s", l)
			}
			prevComment = false
		}
	}
}

// TestDebPolkitPolicy: the action pkexec shows for `pkexec /usr/bin/ebrainpool
// setup --user NAME`.
func TestDebPolkitPolicy(t *testing.T) {
	testenv.RequireTools(t, "xmllint")
	policy := appID + ".policy"
	if out, err := exec.Command("xmllint", "--noout", policy).CombinedOutput(); err != nil {
		t.Fatalf("xmllint: %v\n%s", err, out)
	}
	// polkitd's DTD, where installed (not a test dependency).
	if dtd := "/usr/share/polkit-1/policyconfig-1.dtd"; fileExists(dtd) {
		if out, err := exec.Command("xmllint", "--noout", "--dtdvalid", dtd, policy).CombinedOutput(); err != nil {
			t.Errorf("xmllint --dtdvalid %s: %v\n%s", dtd, err, out)
		}
	}
	var p struct {
		Actions []struct {
			ID          string `xml:"id,attr"`
			Description string `xml:"description"`
			Message     string `xml:"message"`
			Defaults    struct {
				Any      string `xml:"allow_any"`
				Inactive string `xml:"allow_inactive"`
				Active   string `xml:"allow_active"`
			} `xml:"defaults"`
			Annotate []struct {
				Key   string `xml:"key,attr"`
				Value string `xml:",chardata"`
			} `xml:"annotate"`
		} `xml:"action"`
	}
	b, _ := os.ReadFile(policy)
	if err := xml.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Actions) != 1 {
		t.Fatalf("%d actions, want 1", len(p.Actions))
	}
	a := p.Actions[0]
	got := fmt.Sprintf("%s|%s|%s|%s %s %s", a.ID, a.Description, a.Message, a.Defaults.Any, a.Defaults.Inactive, a.Defaults.Active)
	want := appID + ".setup|Set up eBrainPool sandboxes for a user|Authentication is required to let this user share applications in sandboxes|auth_admin auth_admin auth_admin_keep"
	if got != want {
		t.Errorf("action:\n got %s\nwant %s", got, want)
	}
	if len(a.Annotate) != 1 || a.Annotate[0].Key != "org.freedesktop.policykit.exec.path" || a.Annotate[0].Value != "/usr/bin/ebrainpool" {
		t.Errorf("annotations %+v, want org.freedesktop.policykit.exec.path = /usr/bin/ebrainpool", a.Annotate)
	}
}

// TestDebDesktopFiles validates the packaged desktop entry and AppStream
// metadata.
func TestDebDesktopFiles(t *testing.T) {
	testenv.RequireTools(t, "desktop-file-validate", "appstreamcli")
	_, tree := debPackage(t)
	for _, c := range [][]string{
		{"desktop-file-validate", filepath.Join(tree, "usr/share/applications", appID+".desktop")},
		{"desktop-file-validate", filepath.Join(tree, "usr/share/applications", appID+".Open.desktop")},
		{"appstreamcli", "validate", "--no-net", "--explain", filepath.Join(tree, "usr/share/metainfo", appID+".metainfo.xml")},
	} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		t.Logf("%s: %s", c[0], bytes.TrimSpace(out))
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestDebInstallBookworm installs the package into a copy of a minimal
// Debian 12 with apt (without recommends), runs it, sets up a (fake) user,
// reinstalls, upgrades, removes and purges it, and checks what each step
// leaves.
func TestDebInstallBookworm(t *testing.T) {
	testenv.RequireRoot(t)
	deb, tree := debPackage(t)
	cache := cachedChroot(t, bookwormCache, "bookworm", "usr/bin/apt-get")
	root := copyChroot(t, cache)
	restoreArchives := aptArchives(t, root)

	if out, err := inChroot(root, "apt-get", "update", "-qq"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	before := installedCount(t, root)
	// What the old package (Depends: libc6, liblxc1 | liblxc-common, lxc,
	// uidmap; Recommends: avahi-daemon, xauth) pulled in, with and without
	// recommends; and this one with its recommends. Simulated (apt-get -s).
	oldDeps := []string{"libc6", "liblxc1", "lxc", "uidmap"}
	oldNoRecs := simulate(t, root, append([]string{"--no-install-recommends"}, oldDeps...)...)
	oldRecs := simulate(t, root, append(oldDeps, "avahi-daemon", "xauth")...)
	inRoot := "/tmp/" + filepath.Base(deb)
	copyFile(t, deb, filepath.Join(root, inRoot))
	newRecs := simulate(t, root, inRoot)
	out, err := inChroot(root, "apt-get", "install", "-y", "--no-install-recommends", inRoot)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	restoreArchives()
	t.Logf("apt-get install --no-install-recommends ./%s in a minimal bookworm: %s (%d packages installed, %d before); "+
		"with recommends: %s. The old package: %s, with recommends %s",
		filepath.Base(deb), newlyInstalled(out), installedCount(t, root), before, newRecs, oldNoRecs, oldRecs)
	if !strings.Contains(out, "sudo ebrainpool setup --user NAME") {
		t.Errorf("postinst did not print the one-time setup step:\n%s", out)
	}
	for _, p := range []string{"lxc", "qemu-system-x86", "python3", "avahi-daemon"} {
		if installed(root, p) {
			t.Errorf("%s was installed", p)
		}
	}

	// It runs: no missing library, also none of those GLFW loads itself.
	help, err := inChroot(root, "ebrainpool", "--help")
	if err != nil || !strings.Contains(help, "sandbox start") {
		t.Fatalf("ebrainpool --help in the chroot: %v\n%s", err, help)
	}
	if ldd, err := inChroot(root, "ldd", "/usr/bin/ebrainpool"); err != nil || strings.Contains(ldd, "not found") {
		t.Errorf("ldd: %v\n%s", err, ldd)
	}
	for _, lib := range []string{"libXcursor.so.1", "libXrandr.so.2", "libXinerama.so.1", "libXi.so.6", "libXxf86vm.so.1"} {
		if o, err := inChroot(root, "sh", "-c", "ldconfig -p | grep -F "+lib); err != nil {
			t.Errorf("%s (loaded by GLFW) is not installed: %v %s", lib, err, o)
		}
	}
	if o, err := inChroot(root, "man", "-w", "ebrainpool"); err != nil && fileExists(filepath.Join(root, "usr/bin/man")) {
		t.Errorf("man -w ebrainpool: %v %s", err, o)
	}
	if !fileExists(filepath.Join(root, "usr/share/man/man1/ebrainpool.1.gz")) {
		t.Error("no manual page installed")
	}
	if fileExists(filepath.Join(root, "etc/apparmor.d/ebrainpool")) {
		t.Error("AppArmor profile copied to /etc/apparmor.d on a system without AppArmor ABI 4.0")
	}

	// A user set up (what `ebrainpool setup` leaves, without running it:
	// no user namespaces in a chroot test).
	setup := fakeSetup(t, root, "alice")
	checkSetup := func(step string) {
		t.Helper()
		setup.check(t, step, true)
	}
	checkSetup("install")

	// Reinstall, now where AppArmor knows ABI 4.0: the profile is copied.
	if err := os.MkdirAll(filepath.Join(root, "etc/apparmor.d/abi/4.0"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := inChroot(root, "apt-get", "install", "-y", "--reinstall", "--no-install-recommends", inRoot); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	checkSetup("reinstall")
	profile := filepath.Join(root, "etc/apparmor.d/ebrainpool")
	if a, b := readFile(t, filepath.Join(tree, "usr/share/ebrainpool/apparmor/ebrainpool")), readFile(t, profile); a != b {
		t.Errorf("/etc/apparmor.d/ebrainpool after configure:\n%s\nwant the shipped profile", b)
	}

	// Upgrade to a newer version.
	newer := repack(t, deb, version(t)+"+upgrade1")
	copyFile(t, newer, filepath.Join(root, "/tmp/newer.deb"))
	if out, err := inChroot(root, "apt-get", "install", "-y", "--no-install-recommends", "/tmp/newer.deb"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if o, _ := inChroot(root, "dpkg-query", "-W", "-f=${Version}", "ebrainpool"); o != version(t)+"+upgrade1" {
		t.Errorf("after the upgrade dpkg has version %q", o)
	}
	checkSetup("upgrade")

	// Remove: the setup stays, and prerm says so; a locally changed
	// profile stays too.
	appendFile(t, profile, "# a local change\n")
	out, err = inChroot(root, "apt-get", "remove", "-y", "ebrainpool")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "set up for: alice") || !strings.Contains(out, "apt purge ebrainpool") {
		t.Errorf("prerm remove did not list the set-up users:\n%s", out)
	}
	if fileExists(filepath.Join(root, "usr/bin/ebrainpool")) {
		t.Error("/usr/bin/ebrainpool left after remove")
	}
	checkSetup("remove")
	if !fileExists(profile) {
		t.Error("remove deleted the locally changed /etc/apparmor.d/ebrainpool")
	}

	// Purge: everything setup did, and the profile, are gone.
	out, err = inChroot(root, "apt-get", "purge", "-y", "ebrainpool")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("apt-get purge:\n%s", out)
	setup.check(t, "purge", false)
	if fileExists(profile) {
		t.Error("/etc/apparmor.d/ebrainpool left after purge")
	}

	// Install again and purge straight away: nothing left either.
	if out, err := inChroot(root, "apt-get", "install", "-y", "--no-install-recommends", inRoot); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	setup = fakeSetup(t, root, "bob")
	if out, err := inChroot(root, "apt-get", "purge", "-y", "ebrainpool"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	setup.check(t, "install and purge", false)
	for _, p := range []string{"usr/bin/ebrainpool", "var/lib/ebrainpool", "etc/apparmor.d/ebrainpool", "usr/share/ebrainpool"} {
		if fileExists(filepath.Join(root, p)) {
			t.Errorf("/%s left after purge", p)
		}
	}
	if o, _ := inChroot(root, "dpkg-query", "-W", "-f=${Status}", "ebrainpool"); o != "unknown ok not-installed" && o != "" && !strings.Contains(o, "no packages found") {
		t.Errorf("dpkg still knows ebrainpool after purge: %s", o)
	}
}

// fakeState is a user's setup as `ebrainpool setup` leaves it, made by hand
// in a chroot.
type fakeState struct {
	root, user string
	cgroups    []string
}

func fakeSetup(t *testing.T, root, user string) *fakeState {
	t.Helper()
	s := &fakeState{root: root, user: user, cgroups: []string{
		"/sys/fs/cgroup/memory/ebrainpool/" + user,
		"/sys/fs/cgroup/cpu,cpuacct/ebrainpool/" + user,
	}}
	others := "root:100000:65536\ncarol:165536:65536\n"
	writeFile(t, filepath.Join(root, "etc/subuid"), others+user+":231072:65536\n")
	writeFile(t, filepath.Join(root, "etc/subgid"), others+user+":231072:65536\n")
	for _, d := range s.cgroups {
		mkdir(t, filepath.Join(root, d, "lxc.payload.ebp-0123456789abcdef/init.scope"))
		mkdir(t, filepath.Join(root, d, "lxc.monitor.ebp-0123456789abcdef"))
	}
	mkdir(t, filepath.Join(root, "var/lib/ebrainpool", user, "containers/ebp-0123456789abcdef/rootfs/home/guest"))
	writeFile(t, filepath.Join(root, "var/lib/ebrainpool", user, "containers/ebp-0123456789abcdef/rootfs/home/guest/file"), "data\n")
	writeFile(t, filepath.Join(root, "var/lib/ebrainpool", ".setup-"+user+".json"), record(user, 231072, 231072, s.cgroups...))
	return s
}

// check verifies the setup is all there (present) or all gone.
func (s *fakeState) check(t *testing.T, step string, present bool) {
	t.Helper()
	line := s.user + ":231072:65536"
	for _, f := range []string{"etc/subuid", "etc/subgid"} {
		b := readFile(t, filepath.Join(s.root, f))
		if strings.Contains(b, line) != present {
			t.Errorf("after %s: /%s = %q (want %s present: %v)", step, f, b, line, present)
		}
		if !strings.Contains(b, "root:100000:65536\ncarol:165536:65536\n") {
			t.Errorf("after %s: other users' ranges lost from /%s: %q", step, f, b)
		}
	}
	for _, p := range append([]string{"/var/lib/ebrainpool/.setup-" + s.user + ".json", "/var/lib/ebrainpool/" + s.user + "/containers"}, s.cgroups...) {
		if fileExists(filepath.Join(s.root, p)) != present {
			t.Errorf("after %s: %s exists: %v, want %v", step, p, !present, present)
		}
	}
	if !present {
		for _, p := range []string{"var/lib/ebrainpool", "sys/fs/cgroup/memory/ebrainpool", "sys/fs/cgroup/cpu,cpuacct/ebrainpool"} {
			if fileExists(filepath.Join(s.root, p)) {
				t.Errorf("after %s: /%s left", step, p)
			}
		}
	}
}

// aptArchives puts the downloaded packages of earlier runs into the chroot's
// apt cache; the function returned saves the new ones back.
func aptArchives(t *testing.T, root string) func() {
	t.Helper()
	keep := testenv.BuildCache(t, filepath.Join("deb-chroot", "apt-archives-bookworm"))
	dst := filepath.Join(root, "var/cache/apt/archives")
	os.MkdirAll(keep, 0o755)
	debs, _ := filepath.Glob(filepath.Join(keep, "*.deb"))
	for _, d := range debs {
		copyFile(t, d, filepath.Join(dst, filepath.Base(d)))
	}
	return func() {
		debs, _ := filepath.Glob(filepath.Join(dst, "*.deb"))
		for _, d := range debs {
			to := filepath.Join(keep, filepath.Base(d))
			if !fileExists(to) {
				copyFile(t, d, to+".new")
				os.Rename(to+".new", to)
			}
		}
	}
}

// installed reports whether package p is installed in root.
func installed(root, p string) bool {
	o, err := inChroot(root, "dpkg-query", "-W", "-f=${Status}", p)
	return err == nil && o == "install ok installed"
}

func installedCount(t *testing.T, root string) int {
	t.Helper()
	out, err := inChroot(root, "dpkg-query", "-W", "-f=${db:Status-Abbrev}\n")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return strings.Count(out, "ii ")
}

// simulate is what apt-get install -s ARGS would install.
func simulate(t *testing.T, root string, args ...string) string {
	t.Helper()
	out, err := inChroot(root, append([]string{"apt-get", "install", "-s"}, args...)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return newlyInstalled(out)
}

// newlyInstalled is apt-get's "N newly installed" summary.
func newlyInstalled(aptOut string) string {
	m := regexp.MustCompile(`\d+ upgraded, (\d+) newly installed`).FindStringSubmatch(aptOut)
	if m == nil {
		return "?"
	}
	return m[1] + " new packages"
}

// repack makes a copy of deb with another version (an upgrade to test).
func repack(t *testing.T, deb, ver string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pkg")
	if out, err := exec.Command("dpkg-deb", "-R", deb, dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -R: %v\n%s", err, out)
	}
	ctl := filepath.Join(dir, "DEBIAN/control")
	b := readFile(t, ctl)
	b = regexp.MustCompile(`(?m)^Version: .*$`).ReplaceAllString(b, "Version: "+ver)
	writeFile(t, ctl, b)
	out := filepath.Join(t.TempDir(), "newer.deb")
	if o, err := exec.Command("dpkg-deb", "--root-owner-group", "-b", dir, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -b: %v\n%s", err, o)
	}
	return out
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-f", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v %s", src, dst, err, out)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t *testing.T, p, s string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}
