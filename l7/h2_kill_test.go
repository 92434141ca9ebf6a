package l7

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// TestH2CloseConnsCutsStreamsInFlight: CloseConns resets the HTTP/2
// streams whose exchanges go to that backend, a download under way and a
// request waiting for its answer, without trying the latter elsewhere,
// while a stream of the same connection to another backend is served.
func TestH2CloseConnsCutsStreamsInFlight(t *testing.T) {
	f, _ := tlsFixture(t, 2, h2Options(t), nil)
	c, _ := h2Client(t)
	url := "https://" + f.addr
	victim, _ := get(t, c, url+"/")
	other := "app-01"
	if victim == other {
		other = "app-02"
	}
	// A 256 MiB download, of which only the start is read.
	req, _ := http.NewRequest("GET", url+"/big", nil)
	big, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Body.Close()
	if _, err := io.ReadFull(big.Body, make([]byte, 1<<20)); err != nil {
		t.Fatalf("reading the start of /big: %v", err)
	}
	// A request the backend holds for two seconds.
	type answer struct {
		id  string
		err error
	}
	slow := make(chan answer, 1)
	go func() {
		id, _, err := tryGet(c, url+"/slow")
		slow <- answer{id, err}
	}()
	if err := f.byID[victim].awaitArrivals("/slow", 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	f.proxy.CloseConns(victim)

	if a := <-slow; a.err == nil {
		t.Errorf("the held request after the kill was answered by %s, want its stream reset", a.id)
	}
	if n := f.byID[other].arrived("/slow"); n != 0 {
		t.Errorf("the cut request was tried on %s (%d arrivals), want it not tried elsewhere", other, n)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, big.Body)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the download ran to its end after the kill, want its stream reset")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the download still flows 30 s after the kill")
	}
	// The same connection serves a stream to the other backend.
	if id, _ := get(t, c, url+"/", "Cookie", "SERVERID="+other); id != other {
		t.Errorf("a request pinned to %s after the kill went to %s", other, id)
	}
}
