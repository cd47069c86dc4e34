package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "id_ed25519")
	id, err := LoadOrCreate(path, "alice@test")
	if err != nil {
		t.Fatalf("creating: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", got)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "-----BEGIN OPENSSH PRIVATE KEY-----") {
		t.Errorf("key file is not in OpenSSH format: %.40q", data)
	}
	again, err := LoadOrCreate(path, "ignored")
	if err != nil {
		t.Fatalf("loading: %v", err)
	}
	if again.Fingerprint() != id.Fingerprint() {
		t.Errorf("reloaded fingerprint %s, want %s", again.Fingerprint(), id.Fingerprint())
	}
	if id.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("key type %s", id.PublicKey().Type())
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}

func TestLoadRefusesOpenPermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id")
	if _, err := LoadOrCreate(path, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Fatalf("Load with mode 0644: err = %v, want 'too open'", err)
	}
}

func TestLoadGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(path, ""); err == nil {
		t.Fatal("LoadOrCreate on garbage: no error")
	}
	data, _ := os.ReadFile(path)
	if string(data) != "not a key" {
		t.Error("garbage key file was overwritten")
	}
}

func newKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestFingerprint(t *testing.T) {
	k := newKey(t)
	fp := FingerprintOf(k)
	if fp.String() != ssh.FingerprintSHA256(k) {
		t.Errorf("fingerprint %s, want %s", fp, ssh.FingerprintSHA256(k))
	}
	if len(fp) != FingerprintLen {
		t.Errorf("len = %d, want %d", len(fp), FingerprintLen)
	}
	short := fp.Short()
	if !regexp.MustCompile(`^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$`).MatchString(short) {
		t.Errorf("Short() = %q, want 4 groups of 4 base32 characters", short)
	}
	if other := FingerprintOf(newKey(t)).Short(); other == short {
		t.Errorf("two keys share the short form %s", short)
	}
}

func TestParseFingerprint(t *testing.T) {
	valid := string(FingerprintOf(newKey(t)))
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"valid", valid, true},
		{"empty", "", false},
		{"no prefix", valid[len("SHA256:"):], false},
		{"md5 prefix", "MD5:" + valid[len("SHA256:"):], false},
		{"lowercase prefix", "sha256:" + valid[len("SHA256:"):], false},
		{"truncated", valid[:len(valid)-1], false},
		{"padded", valid + "=", false},
		{"too long", valid + "A", false},
		{"bad character", valid[:len(valid)-2] + "*A", false},
		{"url alphabet", valid[:len(valid)-2] + "-_", false},
		{"trailing space", valid[:len(valid)-1] + " ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fp, err := ParseFingerprint(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseFingerprint(%q) err = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if tt.ok && string(fp) != tt.in {
				t.Errorf("got %q", fp)
			}
			if !tt.ok && Fingerprint(tt.in).Short() != "" {
				t.Errorf("Short() of invalid fingerprint is not empty")
			}
		})
	}
}
