package identity_test

import (
	"sync"
	"testing"

	"github.com/kithcdp/kith/identity"
)

// Every reader of a Current sees the rules last set, from its next Load;
// nil stands for the defaults.
func TestCurrentHandsEveryReaderTheRulesLastSet(t *testing.T) {
	c := identity.NewCurrent(nil)
	if c.Load().Blocked("shared@x.io") || !c.Load().Blocked("test@test.com") {
		t.Fatal("NewCurrent(nil) does not hold the defaults")
	}
	strict, err := identity.ParseRules([]byte(`{"types":[{"name":"user_id","sources":["userId"],"priority":1}],"blocked":{"exact":["shared@x.io"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	readers := []func() *identity.Rules{c.Load, c.Load}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				_ = c.Load().Blocked("x")
			}
		})
	}
	c.Set(strict)
	wg.Wait()
	for _, load := range readers {
		if !load().Blocked("shared@x.io") {
			t.Fatal("a reader does not see the rules set")
		}
	}
	c.Set(nil)
	if c.Load().Blocked("shared@x.io") {
		t.Fatal("Set(nil) does not put the defaults back")
	}
}
