package keys

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Two well-formed hashes for fixtures.
var (
	hashA = HashKey("key-a")
	hashB = HashKey("key-b")
)

func TestDefault(t *testing.T) {
	f := Default()
	if err := f.Validate(); err != nil {
		t.Fatalf("Default does not validate: %v", err)
	}
	want := File{
		Anonymous: &AnonymousPolicy{Plan: "developer"},
		Plans: map[string]Plan{
			"developer": {CustomNames: false, Rate: 0, Burst: 0},
			"pro":       {CustomNames: true, Rate: 0, Burst: 0},
		},
	}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("Default() = %+v, want %+v", f, want)
	}
	// Each call is a fresh value: changing one does not change the next.
	f.Plans["developer"] = Plan{Rate: 1, Burst: 1}
	f.Anonymous.Plan = "pro"
	if g := Default(); g.Plans["developer"].Rate != 0 || g.Anonymous.Plan != "developer" {
		t.Fatal("Default shares state between calls")
	}
	// Marshalled, it reads back the same.
	out, err := Marshal(Default())
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Marshal(Default())): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, Default()) {
		t.Fatalf("round trip of Default = %+v", back)
	}
}

func TestMarshalFormat(t *testing.T) {
	f := Default()
	f.Keys = []Key{{ID: "acme-ci", Namespace: "acme", Plan: "pro", SHA256: hashA}}
	out, err := Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "anonymous": {"plan": "developer"},
  "plans": {
    "developer": {"custom_names": false, "rate": 0, "burst": 0},
    "pro": {"custom_names": true, "rate": 0, "burst": 0}
  },
  "keys": [
    {"id": "acme-ci", "namespace": "acme", "plan": "pro", "sha256": "` + hashA + `"}
  ]
}
`
	if string(out) != want {
		t.Fatalf("Marshal =\n%s\nwant\n%s", out, want)
	}
	empty, err := Marshal(File{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"anonymous\": null,\n  \"plans\": {},\n  \"keys\": []\n}\n"; string(empty) != want {
		t.Fatalf("Marshal(File{}) =\n%s\nwant\n%s", empty, want)
	}
}

func TestParseRoundTrip(t *testing.T) {
	files := map[string]File{
		"default": Default(),
		"anonymous off, rates, keys": {
			Plans: map[string]Plan{
				"free":                        {Rate: 0.5, Burst: 1},
				"business":                    {CustomNames: true, Rate: 250, Burst: 500},
				"ops":                         {CustomNames: true, Operator: true},
				`odd "name" with ,:{}\ and é`: {CustomNames: true},
			},
			Keys: []Key{
				{ID: "acme-ci", Namespace: "acme", Plan: "business", SHA256: hashA},
				{ID: `weird, id: "quoted" <&>`, Namespace: "public", Plan: "free", SHA256: hashB},
				{ID: "acme-ops", Namespace: "acme", Plan: "ops", SHA256: HashKey("ops")},
			},
		},
		"anonymous on pro": {
			Anonymous: &AnonymousPolicy{Plan: "pro"},
			Plans:     map[string]Plan{"pro": {CustomNames: true, Rate: 10, Burst: 20}},
		},
	}
	for name, f := range files {
		t.Run(name, func(t *testing.T) {
			out, err := Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(back, f) {
				t.Fatalf("round trip:\n got %+v\nwant %+v\nfile:\n%s", back, f, out)
			}
			again, err := Marshal(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, out) {
				t.Fatalf("Marshal is not stable:\n%s\n%s", out, again)
			}
		})
	}
}

// The example of API.md §5, with a real hash, parses as written.
func TestParseAPIExample(t *testing.T) {
	data := `{
  "anonymous": {"plan": "developer"},
  "plans": {
    "developer": {"custom_names": false, "rate": 0, "burst": 0},
    "pro":       {"custom_names": true,  "rate": 0, "burst": 0}
  },
  "keys": [
    {"id": "acme-ci", "namespace": "acme", "plan": "pro", "sha256": "` + hashA + `"}
  ]
}`
	f, err := Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Keys = []Key{{ID: "acme-ci", Namespace: "acme", Plan: "pro", SHA256: hashA}}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("got %+v, want %+v", f, want)
	}
}

func TestParseAnonymous(t *testing.T) {
	plans := `"plans": {"developer": {}, "pro": {"custom_names": true}}`
	tests := []struct {
		name string
		data string
		want *AnonymousPolicy
	}{
		{"absent means developer", `{` + plans + `}`, &AnonymousPolicy{Plan: "developer"}},
		{"null means off", `{"anonymous": null, ` + plans + `}`, nil},
		{"explicit", `{"anonymous": {"plan": "pro"}, ` + plans + `}`, &AnonymousPolicy{Plan: "pro"}},
		{"null without a developer plan", `{"anonymous": null, "plans": {"pro": {}}}`, nil},
		{"null and nothing else", `{"anonymous": null}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(f.Anonymous, tt.want) {
				t.Fatalf("Anonymous = %+v, want %+v", f.Anonymous, tt.want)
			}
			plan, ok := NewIndex(f).Anonymous()
			if ok != (tt.want != nil) {
				t.Fatalf("Index.Anonymous ok = %v", ok)
			}
			if ok && plan != f.Plans[tt.want.Plan] {
				t.Fatalf("Index.Anonymous = %+v", plan)
			}
		})
	}
}

func TestParseAbsentPlansAndKeys(t *testing.T) {
	f, err := Parse([]byte(`{"anonymous": null}`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Plans == nil || len(f.Plans) != 0 || len(f.Keys) != 0 {
		t.Fatalf("got %+v, want empty plans and keys", f)
	}
}

func TestParseErrors(t *testing.T) {
	key := func(id, ns, plan, hash string) string {
		return fmt.Sprintf(`{"id": %q, "namespace": %q, "plan": %q, "sha256": %q}`, id, ns, plan, hash)
	}
	withKeys := func(keys ...string) string {
		return `{"plans": {"developer": {}, "pro": {"custom_names": true}}, "keys": [` + strings.Join(keys, ", ") + `]}`
	}
	withPlan := func(plan string) string {
		return `{"anonymous": null, "plans": {"p": ` + plan + `}}`
	}
	upper := strings.ToUpper(hashA)
	nonHex := "g" + hashA[1:]
	tests := []struct {
		name string
		data string
		want []string // substrings of the error
	}{
		// Syntax and shape.
		{"empty", ``, []string{"empty"}},
		{"whitespace only", " \n ", []string{"empty"}},
		{"not an object", `[]`, []string{"must be a JSON object", "not an array"}},
		{"a string", `"x"`, []string{"must be a JSON object", "not a string"}},
		{"null document", `null`, []string{"must be a JSON object", "not null"}},
		{"trailing object", `{} {}`, []string{"after the JSON object"}},
		{"trailing garbage", `{"anonymous": null} x`, []string{"after the JSON object"}},
		{"syntax error", "{\n\"anonymous\": nul}", []string{"invalid keys file", "line 2"}},
		{"truncated", `{"plans": {`, []string{"unexpected end"}},
		{"invalid UTF-8", "{\"plans\": {\"\xff\": {}}}", []string{"UTF-8"}},

		// Unknown, duplicate and misspelled fields.
		{"unknown top-level field", `{"anonymous": null, "users": []}`, []string{`unknown field "users"`, "anonymous, plans, keys"}},
		{"field in another case", `{"Plans": {}}`, []string{`unknown field "Plans"`}},
		{"operator not a bool", withPlan(`{"operator": "yes"}`), []string{`"operator"`}},
		{"anonymous on an operator plan", `{"anonymous": {"plan": "ops"}, "plans": {"ops": {"operator": true}}}`,
			[]string{`anonymous: plan "ops" is an operator plan`, "cannot be operators"}},
		{"unknown field in anonymous", `{"anonymous": {"plan": "developer", "rate": 1}, "plans": {"developer": {}}}`, []string{`"anonymous": unknown field "rate"`}},
		{"unknown field in plan", withPlan(`{"custom_names": true, "rat": 1}`), []string{`plan "p": unknown field "rat"`, "custom_names, rate, burst"}},
		{"unknown field in key", withKeys(`{"id": "a", "namespace": "acme", "plan": "pro", "sha256": "` + hashA + `", "key": "x"}`), []string{`keys[0]: unknown field "key"`, "id, namespace, plan, sha256"}},
		{"duplicate top-level field", `{"anonymous": null, "anonymous": {"plan": "developer"}}`, []string{`field "anonymous" is given twice`}},
		{"duplicate plan", `{"anonymous": null, "plans": {"p": {}, "p": {"rate": 1, "burst": 1}}}`, []string{`plan "p" is given twice`}},
		{"duplicate field in plan", withPlan(`{"rate": 1, "rate": 2, "burst": 1}`), []string{`plan "p": field "rate" is given twice`}},
		{"duplicate field in key", withKeys(`{"id": "a", "id": "b", "namespace": "acme", "plan": "pro", "sha256": "` + hashA + `"}`), []string{`keys[0]: field "id" is given twice`}},

		// null only where it means something.
		{"null plans", `{"anonymous": null, "plans": null}`, []string{`"plans" must not be null`}},
		{"null keys", `{"keys": null, "plans": {"developer": {}}}`, []string{`"keys" must not be null`}},
		{"null plan", withPlan(`null`), []string{`plan "p" must not be null`}},
		{"null key", withKeys(`null`), []string{`keys[0] must not be null`}},
		{"null rate", withPlan(`{"rate": null}`), []string{`plan "p": "rate" must not be null`}},
		{"null anonymous plan", `{"anonymous": {"plan": null}}`, []string{`"anonymous": "plan" must not be null`}},

		// Types and numbers.
		{"plans is an array", `{"plans": []}`, []string{`"plans" must be an object, not an array`}},
		{"keys is an object", `{"keys": {}}`, []string{`"keys" must be an array, not an object`}},
		{"anonymous is a string", `{"anonymous": "developer"}`, []string{`"anonymous" must be an object, not a string`}},
		{"rate is a string", withPlan(`{"rate": "10"}`), []string{`plan "p": "rate" must be a number, not a string`}},
		{"custom_names is a number", withPlan(`{"custom_names": 1}`), []string{`"custom_names" must be true or false, not a number`}},
		{"burst is a fraction", withPlan(`{"rate": 1, "burst": 1.5}`), []string{`"burst" must be a whole number, not 1.5`}},
		{"burst in exponent form", withPlan(`{"rate": 1, "burst": 1e3}`), []string{`"burst" must be a whole number`}},
		{"burst out of range", withPlan(`{"rate": 1, "burst": 99999999999999999999}`), []string{`"burst"`, "out of range"}},
		{"rate out of range", withPlan(`{"rate": 1e999, "burst": 1}`), []string{`"rate"`, "out of range"}},
		{"id is a number", withKeys(`{"id": 7, "namespace": "acme", "plan": "pro", "sha256": "` + hashA + `"}`), []string{`keys[0]: "id" must be a string, not a number`}},
		// A hash pasted as a number is not echoed.
		{"sha256 is a number", withKeys(`{"id": "a", "namespace": "acme", "plan": "pro", "sha256": 1234567890123456789012345678901234567890123456789012345678901234}`), []string{`"sha256" must be a string, not a number`}},

		// Plans.
		{"empty plan name", `{"anonymous": null, "plans": {"": {}}}`, []string{"plan name is empty"}},
		{"control character in plan name", `{"anonymous": null, "plans": {"a\tb": {}}}`, []string{"control characters"}},
		{"negative rate", withPlan(`{"rate": -1, "burst": 1}`), []string{`plan "p": rate must be 0`, "-1"}},
		{"negative burst", withPlan(`{"burst": -1}`), []string{`plan "p": burst must be 0 or more`}},
		{"rate without burst", withPlan(`{"rate": 5}`), []string{`plan "p": rate 5 needs a burst of at least 1`}},
		{"rate with burst 0", withPlan(`{"rate": 0.1, "burst": 0}`), []string{`plan "p": rate 0.1 needs a burst of at least 1`}},
		{"burst without rate", withPlan(`{"burst": 10}`), []string{`plan "p": burst 10 without a rate`}},

		// Anonymous policy.
		{"anonymous on a missing plan", `{"anonymous": {"plan": "gold"}, "plans": {"developer": {}, "pro": {}}}`, []string{`anonymous: plan "gold" does not exist`, "plans: developer, pro"}},
		{"anonymous with no plan", `{"anonymous": {}, "plans": {"developer": {}}}`, []string{`anonymous: plan "" does not exist`}},
		{"absent anonymous without developer", `{"plans": {"pro": {}}}`, []string{`no "anonymous" field`, `"developer"`, `"anonymous": null`, "plans: pro"}},
		{"absent anonymous, no plans", `{}`, []string{`no "anonymous" field`, "no plans are defined"}},

		// Keys.
		{"empty id", withKeys(key("", "acme", "pro", hashA)), []string{"keys[0]: id is empty"}},
		{"control character in id", withKeys(key("a\nb", "acme", "pro", hashA)), []string{"id contains control characters"}},
		{"duplicate id", withKeys(key("a", "acme", "pro", hashA), key("b", "acme", "pro", HashKey("c")), key("a", "other", "pro", hashB)), []string{`key "a": duplicate id (also keys[0])`}},
		{"bad namespace", withKeys(key("a", "Acme", "pro", hashA)), []string{`key "a"`, "namespace", `"Acme"`}},
		{"empty namespace", withKeys(key("a", "", "pro", hashA)), []string{`key "a"`, "namespace"}},
		{"namespace with a dot", withKeys(key("a", "a.b", "pro", hashA)), []string{`key "a"`, "namespace"}},
		{"missing plan", withKeys(key("a", "acme", "gold", hashA)), []string{`key "a": plan "gold" does not exist (plans: developer, pro)`}},
		{"empty plan", withKeys(key("a", "acme", "", hashA)), []string{`key "a": plan "" does not exist`}},
		{"short hash", withKeys(key("a", "acme", "pro", hashA[:63])), []string{`key "a": sha256 must be 64 lowercase hex digits, got 63 characters`}},
		{"long hash", withKeys(key("a", "acme", "pro", hashA+"0")), []string{"got 65 characters"}},
		{"empty hash", withKeys(key("a", "acme", "pro", "")), []string{"got 0 characters"}},
		{"upper-case hash", withKeys(key("a", "acme", "pro", upper)), []string{`key "a": sha256 must be lowercase hex`}},
		{"non-hex hash", withKeys(key("a", "acme", "pro", nonHex)), []string{`key "a"`, "other characters"}},
		{"hash of the empty string", withKeys(key("a", "acme", "pro", HashKey(""))), []string{`key "a": sha256 is the hash of the empty string`}},
		{"duplicate hash", withKeys(key("a", "acme", "pro", hashA), key("b", "other", "developer", hashA)), []string{`key "b": same sha256 as key "a"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.data))
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", f)
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			for _, secret := range []string{hashA, hashB, upper, nonHex, HashKey(""), "1234567890123456789012345678901234567890123456789012345678901234"} {
				if strings.Contains(msg, secret) || strings.Contains(msg, secret[:40]) {
					t.Errorf("error %q reveals a hash", msg)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error %q spans lines", msg)
			}
		})
	}
}

func TestValidateNonFiniteRate(t *testing.T) {
	// JSON cannot say NaN or Inf, but a File built in code can.
	for _, rate := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		f := File{Plans: map[string]Plan{"p": {Rate: rate, Burst: 1}}}
		if err := f.Validate(); err == nil || !strings.Contains(err.Error(), `plan "p": rate must be a finite number`) {
			t.Errorf("rate %v: err = %v", rate, err)
		}
	}
}

func TestHashKey(t *testing.T) {
	// FIPS 180-2 test vector.
	if got, want := HashKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Fatalf("HashKey(abc) = %s, want %s", got, want)
	}
}

func TestNewKey(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		rest, ok := strings.CutPrefix(k, "llk_")
		if !ok || len(rest) != 43 {
			t.Fatalf("NewKey() = %q: want llk_ and 43 characters", k)
		}
		raw, err := base64.RawURLEncoding.Strict().DecodeString(rest)
		if err != nil || len(raw) != 32 {
			t.Fatalf("NewKey() = %q: not 32 bytes of base64url: %v", k, err)
		}
		if seen[k] {
			t.Fatalf("NewKey repeated %q", k)
		}
		seen[k] = true
	}
}

func TestIndexLookup(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	f := Default()
	f.Plans["metered"] = Plan{Rate: 2, Burst: 4}
	f.Keys = []Key{
		{ID: "acme-ci", Namespace: "acme", Plan: "pro", SHA256: HashKey(key)},
		{ID: "other", Namespace: "other", Plan: "metered", SHA256: hashB},
	}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	idx := NewIndex(f)
	got, plan, ok := idx.Lookup(key)
	if !ok || got != f.Keys[0] || plan != f.Plans["pro"] {
		t.Fatalf("Lookup(key) = %+v, %+v, %v", got, plan, ok)
	}
	if got, plan, ok := idx.Lookup("key-b"); !ok || got.ID != "other" || plan != (Plan{Rate: 2, Burst: 4}) {
		t.Fatalf("Lookup(key-b) = %+v, %+v, %v", got, plan, ok)
	}
	wrong, _ := NewKey()
	for _, k := range []string{wrong, "", key[:len(key)-1], key + "x", strings.ToUpper(key), HashKey(key)} {
		if got, plan, ok := idx.Lookup(k); ok || got != (Key{}) || plan != (Plan{}) {
			t.Errorf("Lookup of a wrong key found %+v, %+v", got, plan)
		}
	}
	if p, ok := idx.Anonymous(); !ok || p != f.Plans["developer"] {
		t.Errorf("Anonymous() = %+v, %v", p, ok)
	}
	if p, ok := idx.Plan("metered"); !ok || p != (Plan{Rate: 2, Burst: 4}) {
		t.Errorf("Plan(metered) = %+v, %v", p, ok)
	}
	if _, ok := idx.Plan("gold"); ok {
		t.Error("Plan(gold) found")
	}
	if n := idx.NumKeys(); n != 2 {
		t.Errorf("NumKeys() = %d", n)
	}

	// The index does not share the file's maps.
	f.Plans["pro"] = Plan{Rate: 1, Burst: 1}
	if _, plan, _ := idx.Lookup(key); plan != (Plan{CustomNames: true}) {
		t.Error("Index changed with the File it was made from")
	}

	// Anonymous off.
	f.Anonymous = nil
	if _, ok := NewIndex(f).Anonymous(); ok {
		t.Error("Anonymous() ok with anonymous off")
	}

	// A nil index refuses everything.
	var none *Index
	if _, _, ok := none.Lookup(key); ok {
		t.Error("nil Index found a key")
	}
	if _, ok := none.Anonymous(); ok {
		t.Error("nil Index lets anonymous in")
	}
	if _, ok := none.Plan("pro"); ok || none.NumKeys() != 0 {
		t.Error("nil Index has plans or keys")
	}
}

// An invalid File (built in code) gives an Index that fails closed.
func TestNewIndexFailsClosed(t *testing.T) {
	f := File{
		Anonymous: &AnonymousPolicy{Plan: "gone"},
		Plans:     map[string]Plan{"p": {}},
		Keys: []Key{
			{ID: "no-plan", Namespace: "a", Plan: "gone", SHA256: HashKey("k1")},
			{ID: "bad-hash", Namespace: "a", Plan: "p", SHA256: "xyz"},
			{ID: "empty", Namespace: "a", Plan: "p", SHA256: HashKey("")},
			{ID: "first", Namespace: "a", Plan: "p", SHA256: HashKey("k2")},
			{ID: "second", Namespace: "a", Plan: "p", SHA256: HashKey("k2")},
		},
	}
	idx := NewIndex(f)
	if _, ok := idx.Anonymous(); ok {
		t.Error("anonymous on a missing plan is on")
	}
	for _, k := range []string{"k1", "xyz", ""} {
		if _, _, ok := idx.Lookup(k); ok {
			t.Errorf("Lookup(%q) found an invalid entry", k)
		}
	}
	if k, _, ok := idx.Lookup("k2"); !ok || k.ID != "first" {
		t.Errorf("Lookup(k2) = %+v, %v; want the first entry", k, ok)
	}

	// An operator plan for anonymous callers, which Validate refuses,
	// leaves them without its power.
	idx = NewIndex(File{Anonymous: &AnonymousPolicy{Plan: "ops"}, Plans: map[string]Plan{"ops": {CustomNames: true, Operator: true}}})
	if p, ok := idx.Anonymous(); !ok || p.Operator || !p.CustomNames || idx.AnonymousPlan() != "ops" {
		t.Errorf("anonymous on an operator plan: %+v, %v, %q; want the plan without Operator", p, ok, idx.AnonymousPlan())
	}
}

func writeFile(t *testing.T, path string, f File) {
	t.Helper()
	data, err := Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.json")); err == nil || !os.IsNotExist(err) {
		t.Fatalf("Load of a missing file: %v", err)
	}
	path := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(path, []byte(`{"anonymous": null, "plans": {"p": {"rate": -1}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path+": ") || !strings.Contains(err.Error(), `plan "p"`) {
		t.Fatalf("Load of an invalid file: %v", err)
	}
	writeFile(t, path, Default())
	f, err := Load(path)
	if err != nil || !reflect.DeepEqual(f, Default()) {
		t.Fatalf("Load = %+v, %v", f, err)
	}
}

func TestStoreReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	oldKey, _ := NewKey()
	newKey, _ := NewKey()
	f := Default()
	f.Keys = []Key{{ID: "old", Namespace: "acme", Plan: "pro", SHA256: HashKey(oldKey)}}
	writeFile(t, path, f)
	first, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	store := NewStore(NewIndex(first))

	// Readers run throughout; each sees one complete index: exactly one of
	// the two keys, and a consistent anonymous policy.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads atomic.Int64
	errs := make(chan string, 8)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				idx := store.Current()
				_, _, hasOld := idx.Lookup(oldKey)
				_, _, hasNew := idx.Lookup(newKey)
				if hasOld == hasNew {
					select {
					case errs <- fmt.Sprintf("inconsistent index: old %v, new %v", hasOld, hasNew):
					default:
					}
				}
				reads.Add(1)
			}
		})
	}

	broken := []string{
		``,
		`{"plans": `,
		`{"anonymous": null, "plans": {"p": {"rate": 1}}}`,
		`{"keys": [{"id": "x", "namespace": "acme", "plan": "gold", "sha256": "` + hashA + `"}]}`,
	}
	for range 20 {
		for _, data := range broken {
			if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			before := store.Current()
			if err := store.Reload(path); err == nil {
				t.Fatalf("Reload accepted %q", data)
			} else if !strings.Contains(err.Error(), path) {
				t.Errorf("Reload error %q does not name the file", err)
			}
			if store.Current() != before {
				t.Fatal("a failed Reload replaced the index")
			}
		}
	}
	if err := store.Reload(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("Reload of a missing file succeeded")
	}
	if _, _, ok := store.Current().Lookup(oldKey); !ok {
		t.Fatal("the old key is gone after failed reloads")
	}

	// A good file is swapped in.
	f.Keys = []Key{{ID: "new", Namespace: "acme", Plan: "developer", SHA256: HashKey(newKey)}}
	f.Anonymous = nil
	writeFile(t, path, f)
	if err := store.Reload(path); err != nil {
		t.Fatal(err)
	}
	idx := store.Current()
	if _, _, ok := idx.Lookup(oldKey); ok {
		t.Error("the old key still works after a reload")
	}
	if k, _, ok := idx.Lookup(newKey); !ok || k.ID != "new" {
		t.Errorf("the new key: %+v, %v", k, ok)
	}
	if _, ok := idx.Anonymous(); ok {
		t.Error("anonymous still on after a reload that turned it off")
	}
	for swapped := reads.Load(); reads.Load() < swapped+100; {
		runtime.Gosched() // let the readers see the new index too
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestStoreZero(t *testing.T) {
	var s Store
	if _, ok := s.Current().Anonymous(); ok {
		t.Error("zero Store lets anonymous in")
	}
	s.Replace(NewIndex(Default()))
	if _, ok := s.Current().Anonymous(); !ok {
		t.Error("Replace did not take")
	}
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// onlyFile fails if the directory holds anything besides the named files
// (a temporary file left behind).
func onlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !reflect.DeepEqual(got, names) {
		t.Fatalf("directory holds %v, want %v", got, names)
	}
}

func TestAppendKeyCreates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	k := Key{ID: "acme-ci", Namespace: "acme", Plan: "pro", SHA256: hashA}
	if err := AppendKey(path, k); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Keys = []Key{k}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("created file = %+v, want %+v", f, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode of a new file = %v, want 0600", st.Mode().Perm())
	}
	onlyFiles(t, dir, "keys.json")
}

func TestAppendKeyAppends(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	f := File{
		Plans: map[string]Plan{"developer": {}, "gold": {CustomNames: true, Rate: 100, Burst: 200}},
		Keys:  []Key{{ID: "first", Namespace: "acme", Plan: "gold", SHA256: hashA}},
	}
	// Written by hand, in another layout: AppendKey rewrites it in its own.
	data := `{"plans": {"gold": {"custom_names": true, "rate": 100, "burst": 200}, "developer": {}},
	 "keys": [{"id": "first", "namespace": "acme", "plan": "gold", "sha256": "` + hashA + `"}]}`
	if err := os.WriteFile(path, []byte(data), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil { // past the umask
		t.Fatal(err)
	}
	k := Key{ID: "second", Namespace: "beta", Plan: "developer", SHA256: hashB}
	if err := AppendKey(path, k); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Anonymous = &AnonymousPolicy{Plan: "developer"} // absent became explicit
	f.Keys = append(f.Keys, k)
	if !reflect.DeepEqual(got, f) {
		t.Fatalf("after append: %+v, want %+v", got, f)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode = %v, want the existing 0640", st.Mode().Perm())
	}
	onlyFiles(t, dir, "keys.json")
}

func TestAppendKeyRefuses(t *testing.T) {
	existing := Key{ID: "acme-ci", Namespace: "acme", Plan: "pro", SHA256: hashA}
	tests := []struct {
		name string
		key  Key
		want []string
	}{
		{"duplicate id", Key{ID: "acme-ci", Namespace: "other", Plan: "pro", SHA256: hashB}, []string{`key "acme-ci": duplicate id`}},
		{"duplicate hash", Key{ID: "again", Namespace: "acme", Plan: "pro", SHA256: hashA}, []string{`key "again": same sha256 as key "acme-ci"`}},
		{"unknown plan", Key{ID: "x", Namespace: "acme", Plan: "gold", SHA256: hashB}, []string{`plan "gold" does not exist`, "plans: developer, pro"}},
		{"bad namespace", Key{ID: "x", Namespace: "-acme", Plan: "pro", SHA256: hashB}, []string{`key "x"`, "namespace"}},
		{"empty id", Key{Namespace: "acme", Plan: "pro", SHA256: hashB}, []string{"keys[1]: id is empty"}},
		{"bad hash", Key{ID: "x", Namespace: "acme", Plan: "pro", SHA256: "abc"}, []string{"sha256 must be 64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "keys.json")
			f := Default()
			f.Keys = []Key{existing}
			writeFile(t, path, f)
			before := readBytes(t, path)
			err := AppendKey(path, tt.key)
			if err == nil {
				t.Fatal("AppendKey succeeded")
			}
			for _, w := range append(tt.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), hashA) || strings.Contains(err.Error(), hashB) {
				t.Errorf("error %q reveals a hash", err)
			}
			if after := readBytes(t, path); !bytes.Equal(before, after) {
				t.Errorf("the file changed:\n%s", after)
			}
			onlyFiles(t, dir, "keys.json")
		})
	}

	t.Run("missing file and a bad key", func(t *testing.T) {
		dir := t.TempDir()
		err := AppendKey(filepath.Join(dir, "keys.json"), Key{ID: "x", Namespace: "acme", Plan: "gold", SHA256: hashB})
		if err == nil || !strings.Contains(err.Error(), `plan "gold" does not exist`) {
			t.Fatalf("err = %v", err)
		}
		onlyFiles(t, dir)
	})
	t.Run("broken existing file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "keys.json")
		if err := os.WriteFile(path, []byte(`{"plans": {`), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := AppendKey(path, Key{ID: "x", Namespace: "acme", Plan: "pro", SHA256: hashB}); err == nil {
			t.Fatal("AppendKey appended to a broken file")
		}
		if got := string(readBytes(t, path)); got != `{"plans": {` {
			t.Fatalf("the broken file changed: %q", got)
		}
		onlyFiles(t, dir, "keys.json")
	})
	t.Run("missing directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope", "keys.json")
		if err := AppendKey(path, Key{ID: "x", Namespace: "acme", Plan: "pro", SHA256: hashB}); err == nil {
			t.Fatal("AppendKey created a directory or succeeded")
		}
	})
}

func TestAppendKeyFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.json")
	link := filepath.Join(dir, "link.json")
	writeFile(t, real, Default())
	if err := os.Symlink("real.json", link); err != nil {
		t.Skip("no symlinks:", err)
	}
	if err := AppendKey(link, Key{ID: "x", Namespace: "acme", Plan: "pro", SHA256: hashA}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v", err)
	}
	f, err := Load(real)
	if err != nil || len(f.Keys) != 1 {
		t.Fatalf("target = %+v, %v", f, err)
	}
}

// Concurrent appends to one file lose no entry.
func TestAppendKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- AppendKey(path, Key{ID: fmt.Sprint("k", i), Namespace: "acme", Plan: "pro", SHA256: HashKey(fmt.Sprint("key", i))})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Keys) != n {
		t.Fatalf("%d keys after %d concurrent appends", len(f.Keys), n)
	}
}
