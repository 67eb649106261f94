// Package commerce reads the Segment e-commerce spec: it turns an `Order
// Completed` event into the order the insights analyse (order id, revenue,
// currency, and the products[] lines with product_id, sku, name, category,
// price and quantity).
package commerce

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/kithcdp/kith"
	"github.com/kithcdp/kith/rawjson"
)

// OrderCompleted is the spec's event name for a purchase.
const OrderCompleted = "Order Completed"

// IsOrder reports whether m is a purchase event.
func IsOrder(m kith.Message) bool { return m.Type == "track" && m.Event == OrderCompleted }

// number accepts a JSON number or a numeric string ("12.50"), as clients
// send both; anything else is absent.
type number struct {
	v  float64
	ok bool
}

func (n *number) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if len(s) > 1 && s[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return nil
		}
		s = strings.TrimSpace(s)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	n.v, n.ok = v, true
	return nil
}

// text accepts a JSON string or number as text (product ids are both).
type text string

func (t *text) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*t = text(strings.TrimSpace(s))
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		*t = text(n.String())
	}
	return nil
}

type wireProduct struct {
	ProductID text   `json:"product_id"`
	ID        text   `json:"id"`
	SKU       text   `json:"sku"`
	Name      text   `json:"name"`
	Category  text   `json:"category"`
	Price     number `json:"price"`
	Quantity  number `json:"quantity"`
}

type wireProperties struct {
	OrderID  text          `json:"order_id"`
	Revenue  number        `json:"revenue"`
	Total    number        `json:"total"`
	Currency text          `json:"currency"`
	Products []wireProduct `json:"products"`
}

// ErrValueNotFinite is the error of an order whose value is not a finite
// number (see ParseOrder).
var ErrValueNotFinite = errors.New("the order's value is not a finite number")

// ParseOrder reads the order carried by an `Order Completed` message. The
// order's value is properties.revenue, else total, else the sum of price ×
// quantity (quantity 1 when absent) over the products. Fields of the wrong
// type are treated as absent rather than failing the order, and so are
// numbers out of float64's range. Errors are a message that is not JSON,
// and an order whose value, taken from its products, overflows (a price of
// 1e308 bought 10 times): that error wraps ErrValueNotFinite and the order
// is refused rather than stored as an infinity, which would poison every
// sum the insights make (and which the stores cannot agree on: PostgreSQL
// keeps NaN, SQLite drops it). The message itself stays in the log and the
// timeline; only its typed order is refused.
func ParseOrder(m kith.Message) (kith.Order, error) {
	// Only properties is decoded: the rest of the message (context, the
	// ids) is split past without being parsed.
	top, err := rawjson.Object(m.Raw)
	if err != nil || top == nil {
		return kith.Order{}, fmt.Errorf("commerce: order %s: not a JSON object: %v", m.MessageID, err)
	}
	var p wireProperties
	if raw, ok := top["properties"]; ok {
		if err := json.Unmarshal(raw, &p); err != nil {
			// Properties that are not an object hold no order fields.
			p = wireProperties{}
		}
	}
	o := kith.Order{
		Seq: m.Seq, Timestamp: m.Timestamp, SourceID: m.SourceID,
		OrderID: string(p.OrderID), Currency: strings.ToUpper(string(p.Currency)),
	}
	var lines float64
	for _, wp := range p.Products {
		it := kith.OrderItem{
			ProductID: string(wp.ProductID), SKU: string(wp.SKU), Name: string(wp.Name),
			Category: string(wp.Category), Price: wp.Price.v, Quantity: 1,
		}
		if it.ProductID == "" {
			it.ProductID = string(wp.ID)
		}
		if it.ProductID == "" {
			it.ProductID = it.SKU
		}
		if wp.Quantity.ok {
			it.Quantity = wp.Quantity.v
		}
		if it.ProductID == "" && it.Name == "" {
			continue // a line that names no product says nothing usable
		}
		lines += it.Price * it.Quantity
		o.Items = append(o.Items, it)
	}
	switch {
	case p.Revenue.ok:
		o.Revenue = p.Revenue.v
	case p.Total.ok:
		o.Revenue = p.Total.v
	default:
		if math.IsInf(lines, 0) || math.IsNaN(lines) {
			return kith.Order{}, fmt.Errorf("commerce: order %s: price × quantity over its %d products adds up to %v: %w", m.MessageID, len(o.Items), lines, ErrValueNotFinite)
		}
		o.Revenue = lines
	}
	return o, nil
}

// ItemKey is the identity of a product for basket analysis: its product
// id, else its name.
func ItemKey(it kith.OrderItem) string {
	if it.ProductID != "" {
		return it.ProductID
	}
	return it.Name
}
