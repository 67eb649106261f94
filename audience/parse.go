package audience

import (
	"fmt"
	"go/scanner"
	"go/token"
	"strconv"
	"strings"
)

// SyntaxError is a text-form definition that does not parse; Offset is the
// byte offset (0-based) of the offending token and Column its 1-based
// column, for pointing at it.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("at column %d: %s", e.Offset+1, e.Msg)
}

// Parse reads the text form of an audience condition, for example
//
//	traits.country = "NL" and count(event "Order Completed" within 90d) >= 2
//
// The grammar, with and binding tighter than or:
//
//	expr    = and { "or" and }
//	and     = unary { "and" unary }
//	unary   = "not" unary | "(" expr ")" | "audience" STRING | "consent" STRING | operand op [value]
//	operand = traits.KEY | traits["KEY"] | agg
//	agg     = FN "(" [path "of"] "event" (STRING | "*") ["where" expr] [window] ")"
//	window  = "within" DUR | "between" DUR "and" DUR "ago"
//	op      = = != < > <= >= contains starts_with ends_with exists in before after
//	value   = STRING | NUMBER | true | false | "[" value {"," value} "]" | DUR "ago"
//
// Inside where, operands are event paths (properties.X, context.X). Tokens
// are Go's (go/scanner): strings are Go string literals. Nesting (not, "("
// and where) stops at MaxDepth levels.
func Parse(src string) (*Node, error) {
	p, err := newParser(src)
	if err != nil {
		return nil, err
	}
	n, err := p.expr(false)
	if err != nil {
		return nil, err
	}
	if p.tok != token.EOF {
		return nil, p.errf("unexpected %s after a complete condition", p.desc())
	}
	if err := n.Validate(); err != nil {
		return nil, &SyntaxError{Offset: 0, Msg: err.Error()}
	}
	return n, nil
}

// ParseAggregate reads the text form of a computed trait, for example
// `sum(properties.revenue of event "Order Completed" within 365d)`.
func ParseAggregate(src string) (*Aggregate, error) {
	p, err := newParser(src)
	if err != nil {
		return nil, err
	}
	if p.tok != token.IDENT || !isAggFn(p.lit) {
		return nil, p.errf("want a function (%s), found %s", strings.Join(aggFns, ", "), p.desc())
	}
	a, err := p.agg()
	if err != nil {
		return nil, err
	}
	if p.tok != token.EOF {
		return nil, p.errf("unexpected %s after the definition", p.desc())
	}
	if err := a.Validate(); err != nil {
		return nil, &SyntaxError{Offset: 0, Msg: err.Error()}
	}
	return a, nil
}

type parser struct {
	src  string
	file *token.File
	sc   scanner.Scanner
	err  *SyntaxError
	pos  int
	tok  token.Token
	lit  string
	// depth counts the not, "(" and where being read; past MaxDepth the
	// parse stops (see MaxDepth).
	depth int
}

// enter counts one more level of nesting at the current token, failing
// past MaxDepth; leave undoes it when the level is read.
func (p *parser) enter() error {
	if p.depth++; p.depth > MaxDepth {
		return p.errf("nested deeper than %d levels (the limit on not, and, or, parentheses and where)", MaxDepth)
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

func newParser(src string) (*parser, error) {
	p := &parser{src: src}
	fs := token.NewFileSet()
	p.file = fs.AddFile("", -1, len(src))
	p.sc.Init(p.file, []byte(src), func(pos token.Position, msg string) {
		if p.err == nil {
			p.err = &SyntaxError{Offset: pos.Offset, Msg: msg}
		}
	}, 0)
	p.next()
	if p.err != nil {
		return nil, p.err
	}
	return p, nil
}

func (p *parser) next() {
	for {
		pos, tok, lit := p.sc.Scan()
		if tok == token.SEMICOLON && lit == "\n" {
			continue // inserted at a line end: the text form spans lines freely
		}
		p.pos, p.tok, p.lit = p.file.Offset(pos), tok, lit
		if tok == token.EOF {
			p.pos = len(p.src)
		}
		return
	}
}

func (p *parser) errf(format string, args ...any) error {
	if p.err != nil {
		return p.err
	}
	return &SyntaxError{Offset: p.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) desc() string {
	switch {
	case p.tok == token.EOF:
		return "end of input"
	case p.lit != "":
		return strconv.Quote(p.lit)
	}
	return strconv.Quote(p.tok.String())
}

func (p *parser) isWord(w string) bool { return p.tok == token.IDENT && p.lit == w }

func (p *parser) expect(tok token.Token, what string) error {
	if p.tok != tok {
		return p.errf("want %s, found %s", what, p.desc())
	}
	p.next()
	return p.scanErr()
}

func (p *parser) expectWord(w string) error {
	if !p.isWord(w) {
		return p.errf("want %q, found %s", w, p.desc())
	}
	p.next()
	return p.scanErr()
}

func (p *parser) scanErr() error {
	if p.err != nil {
		return p.err
	}
	return nil
}

func (p *parser) expr(inWhere bool) (*Node, error) {
	first, err := p.and(inWhere)
	if err != nil {
		return nil, err
	}
	list := []*Node{first}
	for p.isWord("or") {
		p.next()
		n, err := p.and(inWhere)
		if err != nil {
			return nil, err
		}
		list = append(list, n)
	}
	if len(list) == 1 {
		return first, nil
	}
	return &Node{Or: list}, nil
}

func (p *parser) and(inWhere bool) (*Node, error) {
	first, err := p.unary(inWhere)
	if err != nil {
		return nil, err
	}
	list := []*Node{first}
	for p.isWord("and") {
		p.next()
		n, err := p.unary(inWhere)
		if err != nil {
			return nil, err
		}
		list = append(list, n)
	}
	if len(list) == 1 {
		return first, nil
	}
	return &Node{And: list}, nil
}

func (p *parser) unary(inWhere bool) (*Node, error) {
	switch {
	case p.isWord("not"):
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		p.next()
		n, err := p.unary(inWhere)
		if err != nil {
			return nil, err
		}
		return &Node{Not: n}, nil
	case p.tok == token.LPAREN:
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		p.next()
		n, err := p.expr(inWhere)
		if err != nil {
			return nil, err
		}
		return n, p.expect(token.RPAREN, `")"`)
	case !inWhere && (p.isWord("audience") || p.isWord("consent")):
		word := p.lit
		p.next()
		s, err := p.str("a quoted " + word + " name")
		if err != nil {
			return nil, err
		}
		if word == "audience" {
			return &Node{Audience: s}, nil
		}
		return &Node{Consent: s}, nil
	}
	n := &Node{}
	switch {
	case p.tok == token.IDENT && isAggFn(p.lit) && !inWhere:
		a, err := p.agg()
		if err != nil {
			return nil, err
		}
		n.Aggregate = a
	case p.tok == token.IDENT && p.lit == "traits" && !inWhere:
		key, err := p.path()
		if err != nil {
			return nil, err
		}
		n.Trait = strings.TrimPrefix(key, "traits.")
	case p.tok == token.IDENT && inWhere && (p.lit == "properties" || p.lit == "context" || p.lit == "traits"):
		path, err := p.path()
		if err != nil {
			return nil, err
		}
		n.Property = path
	default:
		if inWhere {
			return nil, p.errf("want an event path (properties.X, context.X), not, or \"(\"; found %s", p.desc())
		}
		return nil, p.errf("want traits.X, an aggregate such as count(event \"X\"), audience \"key\", consent \"Category\", not, or \"(\"; found %s", p.desc())
	}
	return n, p.comparison(n)
}

// path reads head.a.b or head["a.b"], returning "head.a.b".
func (p *parser) path() (string, error) {
	head := p.lit
	p.next()
	switch p.tok {
	case token.PERIOD:
		var segs []string
		for p.tok == token.PERIOD {
			p.next()
			if p.tok != token.IDENT {
				return "", p.errf("want a name after %q, found %s", ".", p.desc())
			}
			segs = append(segs, p.lit)
			p.next()
		}
		return head + "." + strings.Join(segs, "."), nil
	case token.LBRACK:
		p.next()
		s, err := p.str("a quoted key")
		if err != nil {
			return "", err
		}
		if s == "" {
			return "", p.errf("empty key")
		}
		return head + "." + s, p.expect(token.RBRACK, `"]"`)
	}
	return "", p.errf("want %q or %q after %s, found %s", ".", "[", head, p.desc())
}

func (p *parser) str(what string) (string, error) {
	if p.tok != token.STRING {
		return "", p.errf("want %s, found %s", what, p.desc())
	}
	s, err := strconv.Unquote(p.lit)
	if err != nil {
		return "", p.errf("bad string %s", p.lit)
	}
	p.next()
	return s, p.scanErr()
}

func isAggFn(s string) bool {
	for _, f := range aggFns {
		if f == s {
			return true
		}
	}
	return false
}

func (p *parser) agg() (*Aggregate, error) {
	a := &Aggregate{Fn: p.lit}
	fnPos := p.pos
	p.next()
	if err := p.expect(token.LPAREN, `"(" after `+a.Fn); err != nil {
		return nil, err
	}
	if p.tok == token.IDENT && (p.lit == "properties" || p.lit == "context" || p.lit == "traits") {
		path, err := p.path()
		if err != nil {
			return nil, err
		}
		a.Property = path
		if err := p.expectWord("of"); err != nil {
			return nil, err
		}
	}
	if err := p.expectWord("event"); err != nil {
		return nil, err
	}
	if p.tok == token.MUL {
		a.Event = AnyEvent
		p.next()
	} else {
		s, err := p.str(`a quoted event name or *`)
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, p.errf("empty event name")
		}
		a.Event = s
	}
	if p.isWord("where") {
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer p.leave()
		p.next()
		w, err := p.expr(true)
		if err != nil {
			return nil, err
		}
		a.Where = w
	}
	switch {
	case p.isWord("within"):
		p.next()
		d, err := p.dur()
		if err != nil {
			return nil, err
		}
		a.Window = &Window{Within: d}
	case p.isWord("between"):
		p.next()
		from, err := p.dur()
		if err != nil {
			return nil, err
		}
		if err := p.expectWord("and"); err != nil {
			return nil, err
		}
		to, err := p.dur()
		if err != nil {
			return nil, err
		}
		if err := p.expectWord("ago"); err != nil {
			return nil, err
		}
		a.Window = &Window{From: from, To: to}
	}
	if err := p.expect(token.RPAREN, `")" (or where, within, between)`); err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, &SyntaxError{Offset: fnPos, Msg: err.Error()}
	}
	return a, nil
}

// dur reads a duration: 90d, or 90 d / 90 days.
func (p *parser) dur() (Duration, error) {
	if p.tok != token.INT {
		return 0, p.errf("want a duration such as 90d, found %s", p.desc())
	}
	start, num := p.pos, p.lit
	p.next()
	if p.tok != token.IDENT {
		return 0, p.errf("want a unit (m, h, d, w) after %s", num)
	}
	unit := map[string]string{"m": "m", "min": "m", "minutes": "m", "h": "h", "hours": "h", "d": "d", "days": "d", "w": "w", "weeks": "w"}[p.lit]
	if unit == "" {
		return 0, p.errf("unknown unit %q (want m, h, d or w)", p.lit)
	}
	d, err := ParseDuration(num + unit)
	if err != nil {
		return 0, &SyntaxError{Offset: start, Msg: err.Error()}
	}
	p.next()
	return d, p.scanErr()
}

func (p *parser) comparison(n *Node) error {
	opPos := p.pos
	switch p.tok {
	case token.ASSIGN, token.EQL:
		n.Op = "="
	case token.NEQ:
		n.Op = "!="
	case token.LSS:
		n.Op = "<"
	case token.GTR:
		n.Op = ">"
	case token.LEQ:
		n.Op = "<="
	case token.GEQ:
		n.Op = ">="
	case token.IDENT:
		switch p.lit {
		case "contains", "starts_with", "ends_with", "exists", "in", "before", "after":
			n.Op = p.lit
		}
	}
	if n.Op == "" {
		return p.errf("want a comparison (= != < > <= >= contains starts_with ends_with exists in before after), found %s", p.desc())
	}
	p.next()
	if err := p.scanErr(); err != nil {
		return err
	}
	switch n.Op {
	case "exists":
		return nil
	case "in":
		if p.tok != token.LBRACK {
			return p.errf("in takes a list such as [\"NL\", \"BE\"], found %s", p.desc())
		}
		p.next()
		list := []any{}
		for {
			v, err := p.value()
			if err != nil {
				return err
			}
			list = append(list, v)
			if p.tok == token.COMMA {
				p.next()
				continue
			}
			break
		}
		n.Value = list
		return p.expect(token.RBRACK, `"," or "]"`)
	case "before", "after":
		if p.tok == token.INT {
			d, err := p.dur()
			if err != nil {
				return err
			}
			n.Ago = d
			return p.expectWord("ago")
		}
		s, err := p.str("a quoted date or a duration such as 30d ago")
		if err != nil {
			return err
		}
		if _, ok := parseTime(s); !ok {
			return &SyntaxError{Offset: opPos, Msg: fmt.Sprintf("%q is not a date (want 2006-01-02 or RFC 3339)", s)}
		}
		n.Value = s
		return nil
	}
	v, err := p.value()
	if err != nil {
		return err
	}
	n.Value = v
	return nil
}

func (p *parser) value() (any, error) {
	neg := false
	if p.tok == token.SUB {
		neg = true
		p.next()
	}
	switch {
	case p.tok == token.INT || p.tok == token.FLOAT:
		f, err := strconv.ParseFloat(p.lit, 64)
		if err != nil {
			return nil, p.errf("bad number %s", p.lit)
		}
		if neg {
			f = -f
		}
		p.next()
		return f, p.scanErr()
	case neg:
		return nil, p.errf("want a number after -, found %s", p.desc())
	case p.tok == token.STRING:
		return p.str("a string")
	case p.isWord("true"), p.isWord("false"):
		b := p.lit == "true"
		p.next()
		return b, nil
	}
	return nil, p.errf("want a value (a quoted string, a number, true or false), found %s", p.desc())
}
