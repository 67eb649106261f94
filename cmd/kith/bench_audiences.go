package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// benchComputedTraits are 20 computed traits over the traffic loadgen
// generates: orders, product views, cart adds, checkouts and page views,
// every aggregate kind, with and without windows and filters.
var benchComputedTraits = [][2]string{
	{"orders_90d", `count(event "Order Completed" within 90d)`},
	{"orders_all", `count(event "Order Completed")`},
	{"revenue_365d", `sum(properties.revenue of event "Order Completed" within 365d)`},
	{"revenue_all", `sum(properties.revenue of event "Order Completed")`},
	{"aov", `avg(properties.revenue of event "Order Completed")`},
	{"max_order", `max(properties.revenue of event "Order Completed")`},
	{"min_order", `min(properties.revenue of event "Order Completed")`},
	{"last_currency", `last(properties.currency of event "Order Completed")`},
	{"top_currency", `most_frequent(properties.currency of event "Order Completed")`},
	{"first_currency", `first(properties.currency of event "Order Completed")`},
	{"viewed_7d", `count(event "Product Viewed" within 7d)`},
	{"viewed_products", `unique_count(properties.product_id of event "Product Viewed")`},
	{"viewed_list_30d", `unique_list(properties.product_id of event "Product Viewed" within 30d)`},
	{"added_30d", `count(event "Product Added" within 30d)`},
	{"checkouts_7d", `count(event "Checkout Started" within 7d)`},
	{"pages_1d", `count(event "Product" within 1d)`},
	{"pages_all", `count(event "Product")`},
	{"max_price_viewed", `max(properties.price of event "Product Viewed")`},
	{"eur_orders", `count(event "Order Completed" where properties.currency = "EUR")`},
	{"big_orders_30d", `count(event "Order Completed" where properties.revenue > 100 within 30d)`},
}

// benchAudiences returns 50 audiences mixing traits, computed traits,
// event windows, other audiences and negation.
func benchAudiences() [][2]string {
	var out [][2]string
	add := func(key, def string) { out = append(out, [2]string{key, def}) }
	for i, n := range []int{1, 2, 3, 4, 5} {
		add(fmt.Sprintf("orders_%d", i), fmt.Sprintf("traits.orders_90d >= %d", n))
	}
	for i, x := range []int{50, 100, 200, 500, 1000} {
		add(fmt.Sprintf("spent_%d", i), fmt.Sprintf("traits.revenue_all > %d", x))
	}
	for i, plan := range []string{"free", "starter", "pro", "enterprise"} {
		add(fmt.Sprintf("plan_%d", i), fmt.Sprintf("traits.plan = %q", plan))
		add(fmt.Sprintf("plan_active_%d", i), fmt.Sprintf("traits.plan = %q and traits.viewed_7d >= 2", plan))
		add(fmt.Sprintf("plan_buyer_%d", i), fmt.Sprintf("audience \"plan_%d\" and traits.orders_all >= 1", i))
	}
	for i, d := range []int{1, 2, 3, 7, 14, 30} {
		add(fmt.Sprintf("browsers_%d", i), fmt.Sprintf(`count(event "Product Viewed" within %dd) >= 3`, d))
	}
	for i, cur := range []string{"EUR", "USD", "GBP"} {
		add(fmt.Sprintf("currency_%d", i), fmt.Sprintf("traits.top_currency = %q", cur))
		add(fmt.Sprintf("currency_big_%d", i), fmt.Sprintf("traits.last_currency = %q and traits.max_order > 100", cur))
	}
	add("abandoners", "traits.checkouts_7d >= 1 and traits.orders_90d = 0")
	add("carters", "traits.added_30d >= 2 and not audience \"abandoners\"")
	add("window_shoppers", "traits.viewed_products >= 5 and traits.orders_all = 0")
	add("loyal", "traits.orders_all >= 3 and traits.aov > 50")
	add("whales", "traits.max_order > 300 or traits.revenue_365d > 1000")
	add("bargain", "traits.min_order < 20 and traits.orders_all >= 2")
	add("eur_regulars", "traits.eur_orders >= 2")
	add("big_recent", "traits.big_orders_30d >= 1")
	add("page_fans", "traits.pages_all >= 5 and traits.pages_1d >= 1")
	add("pricey_taste", "traits.max_price_viewed > 80")
	add("emailable", "traits.email exists and not traits.plan = \"free\"")
	add("named_a", "traits.name starts_with \"A\"")
	add("lapsed", `count(event * within 1d) = 0 and traits.orders_all >= 1`)
	add("gb_or_us", "traits.first_currency in [\"GBP\", \"USD\"]")
	add("many_views", `count(event "Product Viewed" between 1d and 7d ago) >= 2`)
	add("new_buyers", "traits.orders_all = 1 and audience \"orders_0\"")
	for len(out) < 50 {
		add(fmt.Sprintf("mix_%d", len(out)), fmt.Sprintf("audience \"orders_%d\" or audience \"browsers_%d\"", len(out)%5, len(out)%6))
	}
	return out[:50]
}

// defineBenchAudiences creates the benchmark's definitions on the server
// and waits until their backfills are done.
func defineBenchAudiences(ctx context.Context, c *client) error {
	for _, d := range benchComputedTraits {
		if err := c.do(ctx, "POST", "/v1/computed-traits", map[string]string{"key": d[0], "definition": d[1]}, nil); err != nil {
			return fmt.Errorf("computed trait %s: %w", d[0], err)
		}
	}
	for _, d := range benchAudiences() {
		if err := c.do(ctx, "POST", "/v1/audiences", map[string]string{"key": d[0], "definition": d[1]}, nil); err != nil {
			return fmt.Errorf("audience %s: %w", d[0], err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var resp struct {
			Data []struct {
				Backfill struct{ State string } `json:"backfill"`
			} `json:"data"`
		}
		if err := c.do(ctx, "GET", "/v1/audiences", nil, &resp); err != nil {
			return err
		}
		done := true
		for _, d := range resp.Data {
			done = done && d.Backfill.State == "done"
		}
		if done {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("backfills of the benchmark definitions did not finish")
}

// waitAudiences waits until the audience engine has folded in everything
// the indexer applied, and returns its status.
func waitAudiences(ctx context.Context, c *client, timeout time.Duration) (map[string]any, error) {
	deadline := time.Now().Add(timeout)
	idle := 0
	for {
		var st struct {
			Backlog   int64          `json:"backlog"`
			Audiences map[string]any `json:"audiences"`
		}
		if err := c.do(ctx, "GET", "/v1/stats", nil, &st); err != nil {
			return nil, err
		}
		if st.Backlog == 0 && st.Audiences != nil && st.Audiences["pending"] == 0.0 {
			if idle++; idle >= 3 {
				return st.Audiences, nil
			}
		} else {
			idle = 0
		}
		if time.Now().After(deadline) {
			return st.Audiences, fmt.Errorf("the audience engine did not catch up in %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reportAudiences waits for the engine and prints its lag: how long after
// arrival the events' membership changes were committed.
func reportAudiences(ctx context.Context, c *client, stdout io.Writer, quiet bool, run string) {
	st, err := waitAudiences(ctx, c, 5*time.Minute)
	if quiet {
		return
	}
	if err != nil {
		fmt.Fprintf(stdout, "audiences  %v\n", err)
	}
	if st != nil {
		fmt.Fprintf(stdout, "audiences  (%s) lag from arrival to committed membership: p50 %.1f ms, p99 %.1f ms, max %.1f ms over the last %v events\n",
			run, st["lagP50Ms"], st["lagP99Ms"], st["lagMaxMs"], st["lagSamples"])
		fmt.Fprintf(stdout, "           (arrival to the indexer's commit: p50 %.1f ms, p99 %.1f ms)\n\n", st["indexLagP50Ms"], st["indexLagP99Ms"])
	}
}
