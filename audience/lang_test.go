package audience

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseFormatRoundTrip(t *testing.T) {
	tests := []struct{ in, want string }{
		{`traits.country = "NL" and count(event "Order Completed" within 90d) >= 2`, ""},
		{`traits.country == "NL"`, `traits.country = "NL"`},
		{`not (traits.a = 1 or traits.b != "x") and audience "vip"`, ""},
		{`consent "Advertising" and traits.email exists`, ""},
		{`traits["first name"] starts_with "An"`, ""},
		{`traits.tags contains "gold"`, ""},
		{`traits.country in ["NL", "BE", 3, true]`, ""},
		{`traits.signup before "2024-01-01"`, ""},
		{`traits.last_seen after 30d ago`, ""},
		{`traits.score <= -1.5`, ""},
		{`sum(properties.revenue of event "Order Completed" where properties.currency = "EUR" and properties.revenue > 0 between 7d and 30d ago) > 100`, ""},
		{`count(event * within 30 days) = 0`, `count(event * within 30d) = 0`},
		{`unique_count(properties.sku of event "Product Viewed" where properties.category ends_with "shoes") >= 3`, ""},
		{`most_frequent(context.page.path of event "page") = "/"`, ""},
		{`last(properties.plan of event "Subscribed" where not properties.trial exists) in ["pro", "team"]`, ""},
		{`a_or_b`, "ERR"},
		{"traits.a = 1 or\n traits.b = 2", `traits.a = 1 or traits.b = 2`},
		{`(traits.a = 1 or traits.b = 2) and traits.c = 3`, ""},
		{`traits.a = 1 or traits.b = 2 and traits.c = 3`, ""},
	}
	for _, tt := range tests {
		n, err := Parse(tt.in)
		if tt.want == "ERR" {
			if err == nil {
				t.Errorf("Parse(%q): no error", tt.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		want := tt.want
		if want == "" {
			want = tt.in
		}
		if got := Format(n); got != want {
			t.Errorf("Format(Parse(%q)) = %q, want %q", tt.in, got, want)
		}
		// JSON round trip: the tree parses back to the same tree.
		b, _ := json.Marshal(n)
		n2, err := ParseJSON(b)
		if err != nil {
			t.Errorf("ParseJSON(%s): %v", b, err)
			continue
		}
		if !reflect.DeepEqual(n, n2) {
			t.Errorf("JSON round trip of %q changed the tree: %s", tt.in, b)
		}
		n3, err := Parse(Format(n))
		if err != nil || !reflect.DeepEqual(n, n3) {
			t.Errorf("Parse(Format(%q)) differs: %v", tt.in, err)
		}
	}
}

func TestParseErrorsPointAtTheToken(t *testing.T) {
	tests := []struct {
		in     string
		column int
		msg    string
	}{
		{`traits.country = `, 18, "want a value"},
		{`traits.country ~ "NL"`, 16, "want a comparison"},
		{`traits.country = "N`, 18, "string literal not terminated"},
		{`traits.country = "NL" and`, 26, "want traits.X"},
		{`count(event "X" within 90x) > 1`, 26, `unknown unit "x"`},
		{`count(event "X" within 90d > 1`, 28, `want ")"`},
		{`sum(event "X") > 1`, 1, "sum needs a property"},
		{`properties.total > 1`, 1, "want traits.X"},
		{`count(event "X" where traits2.a = 1) > 1`, 23, "want an event path"},
		{`traits.a in "x"`, 13, "in takes a list"},
		{`traits.a before "yesterday"`, 10, "not a date"},
		{`count(event "X" between 30d and 7d ago) > 1`, 1, "from (30d) must be less than to (7d)"},
		{`traits.a = 1 traits.b = 2`, 14, "unexpected"},
		{`audience vip`, 10, "want a quoted audience name"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %v, want a SyntaxError", tt.in, err)
			continue
		}
		if se.Offset+1 != tt.column || !strings.Contains(se.Msg, tt.msg) {
			t.Errorf("Parse(%q) = %v (column %d), want column %d and %q", tt.in, err, se.Offset+1, tt.column, tt.msg)
		}
	}
}

func TestParseJSONRejects(t *testing.T) {
	tests := []struct{ in, msg string }{
		{`{"trait":"a","op":"=","value":1,"audience":"x"}`, "exactly one of"},
		{`{"trait":"a","op":"~","value":1}`, "unknown op"},
		{`{"and":[]}`, "empty list"},
		{`{"trait":"a","op":"exists","value":1}`, "exists takes no value"},
		{`{"aggregate":{"fn":"count","event":"X","window":{"within":"9y"}},"op":">","value":1}`, "duration"},
		{`{"aggregate":{"fn":"avg","event":"X"},"op":">","value":1}`, "avg needs a property"},
		{`{"aggregate":{"fn":"count","event":"X","where":{"trait":"a","op":"exists"}},"op":">","value":1}`, "event filter compares event properties"},
		{`{"property":"properties.a","op":"=","value":1}`, "inside an aggregate"},
		{`{"trait":"a","op":"=","value":{"x":1}}`, "takes a string, number or boolean"},
		{`{"trait":"a","op":"=","value":1,"extra":2}`, "unknown field"},
	}
	for _, tt := range tests {
		_, err := ParseJSON([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseJSON(%s) = %v, want %q", tt.in, err, tt.msg)
		}
	}
}

func TestParseAggregate(t *testing.T) {
	for _, in := range []string{
		`count(event "Order Completed" within 90d)`,
		`avg(properties.revenue of event "Order Completed")`,
		`unique_list(properties.category of event "Product Viewed" between 1d and 14d ago)`,
	} {
		a, err := ParseAggregate(in)
		if err != nil {
			t.Fatalf("ParseAggregate(%q): %v", in, err)
		}
		if got := FormatAggregate(a); got != in {
			t.Errorf("FormatAggregate = %q, want %q", got, in)
		}
	}
	if _, err := ParseAggregate(`traits.a = 1`); err == nil {
		t.Error("a condition parsed as a computed trait")
	}
	if _, err := ParseAggregate(`count(event "X") > 1`); err == nil {
		t.Error("a comparison parsed as a computed trait")
	}
}
