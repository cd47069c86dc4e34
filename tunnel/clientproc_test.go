package tunnel

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh/agent"
)

// TestClientSignOnlyAgent checks that the agent a client process gets signs
// with the identity key and does nothing else.
func TestClientSignOnlyAgent(t *testing.T) {
	id := newKeyPair(t, t.TempDir(), "id")
	other := newKeyPair(t, t.TempDir(), "other")
	a := signOnlyAgent{id.signer}
	keys, err := a.List()
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[0].Blob, id.signer.PublicKey().Marshal()) {
		t.Fatalf("List = %v, %v; want the identity key only", keys, err)
	}
	data := []byte("session id")
	sig, err := a.Sign(id.signer.PublicKey(), data)
	if err != nil {
		t.Fatal(err)
	}
	if err := id.signer.PublicKey().Verify(data, sig); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if _, err := a.Sign(other.signer.PublicKey(), data); err == nil {
		t.Error("signed with a key it does not hold")
	}
	if err := a.Add(agent.AddedKey{}); err == nil {
		t.Error("Add accepted")
	}
	if s, err := a.Signers(); err == nil || s != nil {
		t.Error("Signers exposed")
	}
	if err := a.RemoveAll(); err == nil {
		t.Error("RemoveAll accepted")
	}
}

// TestClientStatusStream checks the parent's reading of a client process's
// status pipe: log records relayed, Started once, the final status.
func TestClientStatusStream(t *testing.T) {
	in := strings.Join([]string{
		`{"time":"2024-01-01T00:00:00Z","level":"WARN","msg":"x11 channel closed","err":"boom"}`,
		`{"ebrainpool_client":"started"}`,
		`{"ebrainpool_client":"started"}`,
		`not json`,
		`{"ebrainpool_client":"exit","code":3}`,
	}, "\n") + "\n"
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	started := 0
	st, ok := readClientStatus(context.Background(), strings.NewReader(in), func() { started++ }, log)
	if !ok || st.Code != 3 || st.Error != "" {
		t.Errorf("final status %+v, %v; want code 3", st, ok)
	}
	if started != 1 {
		t.Errorf("Started called %d times, want 1", started)
	}
	for _, want := range []string{`level=WARN msg="x11 channel closed" err=boom`, `output="not json"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %q", logs.String(), want)
		}
	}
}
