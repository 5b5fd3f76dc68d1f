package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/locklock/locklock/engines/memory"
	"github.com/locklock/locklock/internal/keyauth"
	"github.com/locklock/locklock/internal/keys"
	"github.com/locklock/locklock/locklock"
	"github.com/locklock/locklock/transport/client"
	"github.com/locklock/locklock/transport/ratelimit"
)

// The OpenAPI document is written by hand. These tests keep it true: it is
// well-formed OpenAPI 3.1 whose schemas compile and whose examples fit
// them; its paths and methods are exactly the router's; and every response
// the real handler gives (for every operation, every status the document
// lists is provoked) is documented for its operation and fits the schema
// and headers documented for it.

// oaDoc is the parsed document with its compiled schemas.
type oaDoc struct {
	t        *testing.T
	root     map[string]any
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema // by JSON pointer
}

const oaResource = "openapi.json"

var oaOperations = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadOpenAPI(t *testing.T) *oaDoc {
	t.Helper()
	if err := oaNoDuplicateKeys(openAPIDoc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPIDoc))
	if err != nil {
		t.Fatalf("openapi.json does not parse: %v", err)
	}
	root, ok := v.(map[string]any)
	if !ok {
		t.Fatal("openapi.json is not a JSON object")
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020) // OpenAPI 3.1's schema dialect
	c.AssertFormat()
	c.RegisterFormat(&jsonschema.Format{Name: "uint64", Validate: func(v any) error {
		if n, ok := v.(json.Number); ok {
			if _, err := strconv.ParseUint(string(n), 10, 64); err != nil {
				return fmt.Errorf("%s is not an unsigned 64-bit integer", n)
			}
		}
		return nil
	}})
	c.UseLoader(oaNoLoader{}) // every reference must be inside the document
	if err := c.AddResource(oaResource, v); err != nil {
		t.Fatalf("add openapi.json as a schema resource: %v", err)
	}
	return &oaDoc{t: t, root: root, compiler: c, schemas: map[string]*jsonschema.Schema{}}
}

type oaNoLoader struct{}

func (oaNoLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("the document refers outside itself: %s", url)
}

// oaNoDuplicateKeys fails on an object with a key twice: encoding/json
// would silently keep the last one, and a hand-written document can have
// them.
func oaNoDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func(at string) error
	walk = func(at string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					return fmt.Errorf("duplicate key %q at %s", key, at)
				}
				seen[key] = true
				if err := walk(at + "/" + oaEscape(key)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(at + "/" + strconv.Itoa(i)); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk("#"); err != nil {
		return err
	}
	if _, err := dec.Token(); err == nil {
		return fmt.Errorf("data after the document")
	}
	return nil
}

// oaEscape escapes a JSON pointer token (RFC 6901).
func oaEscape(s string) string { return strings.NewReplacer("~", "~0", "/", "~1").Replace(s) }

// lookup returns the node at a JSON pointer ("#/a/b").
func (d *oaDoc) lookup(ptr string) (any, bool) {
	var node any = d.root
	rest, ok := strings.CutPrefix(ptr, "#")
	if !ok {
		return nil, false
	}
	if rest == "" {
		return node, true
	}
	for _, tok := range strings.Split(strings.TrimPrefix(rest, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch n := node.(type) {
		case map[string]any:
			if node, ok = n[tok]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(n) {
				return nil, false
			}
			node = n[i]
		default:
			return nil, false
		}
	}
	return node, true
}

// object returns the object at ptr, following Reference Objects, and the
// pointer where it really is.
func (d *oaDoc) object(ptr string) (map[string]any, string) {
	d.t.Helper()
	for range 10 {
		node, ok := d.lookup(ptr)
		if !ok {
			d.t.Fatalf("%s: no such node in the document", ptr)
		}
		obj, ok := node.(map[string]any)
		if !ok {
			d.t.Fatalf("%s: not an object", ptr)
		}
		ref, isRef := obj["$ref"].(string)
		if !isRef {
			return obj, ptr
		}
		ptr = ref
	}
	d.t.Fatalf("%s: reference loop", ptr)
	return nil, ""
}

// schema compiles the schema at ptr.
func (d *oaDoc) schema(ptr string) *jsonschema.Schema {
	d.t.Helper()
	if s, ok := d.schemas[ptr]; ok {
		return s
	}
	frag := (&url.URL{Fragment: strings.TrimPrefix(ptr, "#")}).EscapedFragment()
	s, err := d.compiler.Compile(oaResource + "#" + frag)
	if err != nil {
		d.t.Fatalf("schema %s does not compile: %v", ptr, err)
	}
	d.schemas[ptr] = s
	return s
}

// operation is the operation object of a path and method.
func (d *oaDoc) operation(path, method string) (map[string]any, string, bool) {
	ptr := "#/paths/" + oaEscape(path) + "/" + strings.ToLower(method)
	if _, ok := d.lookup(ptr); !ok {
		return nil, "", false
	}
	op, ptr := d.object(ptr)
	return op, ptr, true
}

// documentedMethods is path -> upper-case methods.
func (d *oaDoc) documentedMethods() map[string][]string {
	out := map[string][]string{}
	for path, item := range d.root["paths"].(map[string]any) {
		for _, m := range oaOperations {
			if _, ok := item.(map[string]any)[m]; ok {
				out[path] = append(out[path], strings.ToUpper(m))
			}
		}
		slices.Sort(out[path])
	}
	return out
}

// pathParams lists the names of the path parameters an operation declares
// (on its path item or itself), sorted.
func (d *oaDoc) pathParams(path, method string) []string {
	_, itemPtr := d.object("#/paths/" + oaEscape(path))
	_, opPtr, _ := d.operation(path, method)
	var names []string
	for _, at := range []string{itemPtr, opPtr} {
		owner, _ := d.object(at)
		params, _ := owner["parameters"].([]any)
		for i := range params {
			p, _ := d.object(fmt.Sprintf("%s/parameters/%d", at, i))
			if p["in"] == "path" {
				names = append(names, p["name"].(string))
			}
		}
	}
	slices.Sort(names)
	return names
}

// walk calls f for every node of the document with its pointer.
func (d *oaDoc) walk(f func(ptr string, node any)) {
	var rec func(ptr string, node any)
	rec = func(ptr string, node any) {
		f(ptr, node)
		switch n := node.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(n)) {
				rec(ptr+"/"+oaEscape(k), n[k])
			}
		case []any:
			for i, v := range n {
				rec(ptr+"/"+strconv.Itoa(i), v)
			}
		}
	}
	rec("#", d.root)
}

// oaStructure is the part of the OpenAPI 3.1 specification's schema that
// this document uses, strictly: a misspelt or misplaced keyword fails.
const oaStructure = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["openapi", "info", "paths"],
  "properties": {
    "openapi": {"type": "string", "pattern": "^3\\.1\\.[0-9]+$"},
    "info": {
      "type": "object", "required": ["title", "version"], "additionalProperties": false,
      "properties": {"title": {"type": "string", "minLength": 1}, "version": {"type": "string", "minLength": 1},
        "summary": {"type": "string"}, "description": {"type": "string"}}
    },
    "servers": {"type": "array", "items": {"type": "object", "required": ["url"], "additionalProperties": false,
      "properties": {"url": {"type": "string"}, "description": {"type": "string"}}}},
    "security": {"$ref": "#/$defs/security"},
    "tags": {"type": "array", "items": {"type": "object", "required": ["name"], "additionalProperties": false,
      "properties": {"name": {"type": "string"}, "description": {"type": "string"}}}},
    "paths": {"type": "object", "propertyNames": {"pattern": "^/"}, "additionalProperties": {"$ref": "#/$defs/pathItem"}},
    "components": {
      "type": "object", "additionalProperties": false,
      "propertyNames": {"enum": ["schemas", "responses", "parameters", "examples", "requestBodies", "headers", "securitySchemes"]},
      "properties": {
        "schemas": {"$ref": "#/$defs/map", "additionalProperties": {"type": ["object", "boolean"]}},
        "responses": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/response"}},
        "parameters": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/parameter"}},
        "examples": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/example"}},
        "requestBodies": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/requestBody"}},
        "headers": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/header"}},
        "securitySchemes": {"$ref": "#/$defs/map", "additionalProperties": {"$ref": "#/$defs/securityScheme"}}
      }
    }
  },
  "additionalProperties": false,
  "$defs": {
    "map": {"type": "object", "propertyNames": {"pattern": "^[a-zA-Z0-9._-]+$"}},
    "ref": {"type": "object", "required": ["$ref"], "additionalProperties": false,
      "properties": {"$ref": {"type": "string", "pattern": "^#/components/"}, "summary": {"type": "string"}, "description": {"type": "string"}}},
    "security": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}},
    "schema": {"type": ["object", "boolean"]},
    "pathItem": {
      "type": "object", "additionalProperties": false,
      "properties": {
        "summary": {"type": "string"}, "description": {"type": "string"},
        "parameters": {"$ref": "#/$defs/parameters"},
        "get": {"$ref": "#/$defs/operation"}, "put": {"$ref": "#/$defs/operation"},
        "post": {"$ref": "#/$defs/operation"}, "delete": {"$ref": "#/$defs/operation"},
        "options": {"$ref": "#/$defs/operation"}, "head": {"$ref": "#/$defs/operation"},
        "patch": {"$ref": "#/$defs/operation"}, "trace": {"$ref": "#/$defs/operation"}
      }
    },
    "operation": {
      "type": "object", "required": ["responses", "operationId"], "additionalProperties": false,
      "properties": {
        "tags": {"type": "array", "items": {"type": "string"}},
        "summary": {"type": "string"}, "description": {"type": "string"},
        "operationId": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
        "parameters": {"$ref": "#/$defs/parameters"},
        "requestBody": {"$ref": "#/$defs/requestBody"},
        "responses": {"type": "object", "minProperties": 1,
          "propertyNames": {"pattern": "^([1-5][0-9][0-9]|[1-5]XX|default)$"},
          "additionalProperties": {"$ref": "#/$defs/response"}},
        "security": {"$ref": "#/$defs/security"},
        "deprecated": {"type": "boolean"}
      }
    },
    "parameters": {"type": "array", "items": {"$ref": "#/$defs/parameter"}},
    "parameter": {"if": {"required": ["$ref"]}, "then": {"$ref": "#/$defs/ref"}, "else": {
      "type": "object", "required": ["name", "in", "schema"], "additionalProperties": false,
      "properties": {
        "name": {"type": "string"}, "in": {"enum": ["query", "header", "path", "cookie"]},
        "description": {"type": "string"}, "required": {"type": "boolean"}, "deprecated": {"type": "boolean"},
        "schema": {"$ref": "#/$defs/schema"}, "example": true, "examples": {"$ref": "#/$defs/examples"}
      },
      "if": {"properties": {"in": {"const": "path"}}},
      "then": {"required": ["required"], "properties": {"required": {"const": true}}},
      "not": {"required": ["example", "examples"]}
    }},
    "requestBody": {"if": {"required": ["$ref"]}, "then": {"$ref": "#/$defs/ref"}, "else": {
      "type": "object", "required": ["content"], "additionalProperties": false,
      "properties": {"description": {"type": "string"}, "required": {"type": "boolean"}, "content": {"$ref": "#/$defs/content"}}
    }},
    "response": {"if": {"required": ["$ref"]}, "then": {"$ref": "#/$defs/ref"}, "else": {
      "type": "object", "required": ["description"], "additionalProperties": false,
      "properties": {
        "description": {"type": "string", "minLength": 1},
        "headers": {"type": "object", "additionalProperties": {"$ref": "#/$defs/header"}},
        "content": {"$ref": "#/$defs/content"}
      }
    }},
    "header": {"if": {"required": ["$ref"]}, "then": {"$ref": "#/$defs/ref"}, "else": {
      "type": "object", "required": ["schema"], "additionalProperties": false,
      "properties": {
        "description": {"type": "string"}, "required": {"type": "boolean"}, "deprecated": {"type": "boolean"},
        "schema": {"$ref": "#/$defs/schema"}, "example": true, "examples": {"$ref": "#/$defs/examples"}
      }
    }},
    "content": {"type": "object", "minProperties": 1,
      "propertyNames": {"pattern": "^[a-z]+/[a-z0-9.+-]+$"},
      "additionalProperties": {
        "type": "object", "required": ["schema"], "additionalProperties": false,
        "properties": {"schema": {"$ref": "#/$defs/schema"}, "example": true, "examples": {"$ref": "#/$defs/examples"}},
        "not": {"required": ["example", "examples"]}
      }},
    "examples": {"type": "object", "additionalProperties": {"$ref": "#/$defs/example"}},
    "example": {"if": {"required": ["$ref"]}, "then": {"$ref": "#/$defs/ref"}, "else": {
      "type": "object", "required": ["value"], "additionalProperties": false,
      "properties": {"summary": {"type": "string"}, "description": {"type": "string"}, "value": true}
    }},
    "securityScheme": {
      "type": "object", "required": ["type"], "additionalProperties": false,
      "properties": {
        "type": {"enum": ["apiKey", "http", "mutualTLS", "oauth2", "openIdConnect"]},
        "description": {"type": "string"}, "name": {"type": "string"}, "in": {"enum": ["query", "header", "cookie"]},
        "scheme": {"type": "string"}, "bearerFormat": {"type": "string"}
      },
      "if": {"properties": {"type": {"const": "http"}}}, "then": {"required": ["scheme"]}
    }
  }
}`

func TestOpenAPIDocument(t *testing.T) {
	d := loadOpenAPI(t)

	// Structure.
	meta, err := jsonschema.UnmarshalJSON(strings.NewReader(oaStructure))
	if err != nil {
		t.Fatal(err)
	}
	mc := jsonschema.NewCompiler()
	if err := mc.AddResource("oas-structure.json", meta); err != nil {
		t.Fatal(err)
	}
	structure, err := mc.Compile("oas-structure.json")
	if err != nil {
		t.Fatal(err)
	}
	var root any = d.root
	if err := structure.Validate(root); err != nil {
		t.Fatalf("openapi.json is not the OpenAPI 3.1 this test expects:\n%v", err)
	}

	// Every reference resolves; every schema compiles; operation IDs are
	// unique; path templates and path parameters agree; every security
	// requirement names a scheme.
	schemes := d.root["components"].(map[string]any)["securitySchemes"].(map[string]any)
	d.walk(func(ptr string, node any) {
		obj, ok := node.(map[string]any)
		if !ok {
			return
		}
		if ref, ok := obj["$ref"].(string); ok {
			if _, ok := d.lookup(ref); !ok {
				t.Errorf("%s: $ref %s resolves to nothing", ptr, ref)
			}
		}
		if s, ok := obj["schema"]; ok && !strings.Contains(ptr, "/properties/") {
			if _, isObj := s.(map[string]any); isObj {
				d.schema(ptr + "/schema")
			}
		}
	})
	for name := range d.root["components"].(map[string]any)["schemas"].(map[string]any) {
		d.schema("#/components/schemas/" + oaEscape(name))
	}
	ids := map[string]string{}
	for path, methods := range d.documentedMethods() {
		for _, m := range methods {
			op, opPtr, _ := d.operation(path, m)
			id, _ := op["operationId"].(string)
			if other, dup := ids[id]; dup {
				t.Errorf("operationId %s on both %s and %s", id, other, opPtr)
			}
			ids[id] = opPtr
			if pathParams, want := d.pathParams(path, m), oaTemplateVars(path); !slices.Equal(pathParams, want) {
				t.Errorf("%s %s: path parameters %v, template has %v", m, path, pathParams, want)
			}
			reqs := d.root["security"]
			if s, ok := op["security"]; ok {
				reqs = s
			}
			for _, r := range reqs.([]any) {
				for name := range r.(map[string]any) {
					if _, ok := schemes[name]; !ok {
						t.Errorf("%s: security scheme %s is not defined", opPtr, name)
					}
				}
			}
		}
	}
}

// oaTemplateVars lists the {variables} of a path template, sorted.
func oaTemplateVars(tpl string) []string {
	var vars []string
	for _, seg := range oaSplitTemplate(tpl) {
		if strings.HasPrefix(seg, "{") {
			name, _, _ := strings.Cut(strings.Trim(seg, "{}"), ":")
			vars = append(vars, name)
		}
	}
	slices.Sort(vars)
	return vars
}

// oaSplitTemplate splits a path template into literal text and {variable}
// parts; a mux variable's pattern may itself contain braces.
func oaSplitTemplate(tpl string) []string {
	var parts []string
	depth, start := 0, 0
	for i, c := range tpl {
		switch c {
		case '{':
			if depth == 0 {
				if i > start {
					parts = append(parts, tpl[start:i])
				}
				start = i
			}
			depth++
		case '}':
			depth--
			if depth == 0 {
				parts = append(parts, tpl[start:i+1])
				start = i + 1
			}
		}
	}
	if start < len(tpl) {
		parts = append(parts, tpl[start:])
	}
	return parts
}

func TestOpenAPIExamples(t *testing.T) {
	d := loadOpenAPI(t)
	n := 0
	check := func(where, schemaPtr string, v any) {
		t.Helper()
		n++
		if err := d.schema(schemaPtr).Validate(v); err != nil {
			t.Errorf("%s does not fit its schema %s:\n%v", where, schemaPtr, err)
		}
	}
	d.walk(func(ptr string, node any) {
		obj, ok := node.(map[string]any)
		if !ok {
			return
		}
		switch ex := obj["examples"].(type) {
		case []any: // a schema's own examples
			for i, v := range ex {
				check(fmt.Sprintf("%s/examples/%d", ptr, i), ptr, v)
			}
		case map[string]any: // a media type's, parameter's or header's Example Objects
			if ptr == "#/components" {
				return // reusable Example Objects, checked where they are used
			}
			if _, ok := obj["schema"]; !ok {
				t.Errorf("%s: examples without a schema", ptr)
				return
			}
			for _, name := range slices.Sorted(maps.Keys(ex)) {
				e, _ := d.object(ptr + "/examples/" + oaEscape(name))
				check(ptr+"/examples/"+name, ptr+"/schema", e["value"])
			}
		}
		if v, ok := obj["example"]; ok {
			check(ptr+"/example", ptr+"/schema", v)
		}
		if v, ok := obj["default"]; ok && obj["type"] != nil {
			check(ptr+"/default", ptr, v)
		}
	})
	if n < 20 {
		t.Errorf("only %d examples checked; is the walk broken?", n)
	}
}

// TestOpenAPIRoutes holds openapi.json to the route table both ways: the
// same path templates (so the same parameter names), the same methods on
// each, and each operation declaring exactly its route's path parameter.
// Routes (the metrics labels) and the router are checked against the table
// too, so no copy of it can drift.
func TestOpenAPIRoutes(t *testing.T) {
	d := loadOpenAPI(t)
	router, ok := NewHandler(locklock.NewService(memory.New())).(*router)
	if !ok {
		t.Fatal("NewHandler no longer returns the *router this test walks")
	}
	served := map[string][]string{} // template -> methods
	var servedOrder []string
	for _, ms := range router.routes() {
		served[ms.template] = slices.Sorted(maps.Keys(ms.byMethod))
		servedOrder = append(servedOrder, ms.template)
	}
	if !slices.Equal(servedOrder, Routes()) {
		t.Errorf("the router serves %v, Routes lists %v", servedOrder, Routes())
	}
	if len(routeTable) != 15 {
		t.Errorf("the route table has %d routes, want 15", len(routeTable))
	}
	documented := d.documentedMethods()
	for _, row := range routeTable {
		doc, ok := documented[row.template]
		if !ok {
			t.Errorf("route %s is served but not documented", row.template)
			continue
		}
		if methods := served[row.template]; !slices.Equal(methods, doc) {
			t.Errorf("route %s: served methods %v, documented %v", row.template, methods, doc)
		}
		want := slices.Sorted(slices.Values(row.params))
		if got := oaTemplateVars(row.template); !slices.Equal(got, want) {
			t.Errorf("route %s: template parameters %v, the table's parameter %v", row.template, got, want)
		}
		for _, m := range doc {
			if got := d.pathParams(row.template, m); !slices.Equal(got, want) {
				t.Errorf("%s %s: documented path parameters %v, served %v", m, row.template, got, want)
			}
		}
	}
	for path := range documented {
		if !slices.Contains(Routes(), path) {
			t.Errorf("path %s is documented but not served", path)
		}
	}
}

// TestOpenAPIServerURL: the document names the standalone server's API base
// where the server mounts it and the client looks for it.
func TestOpenAPIServerURL(t *testing.T) {
	d := loadOpenAPI(t)
	servers, _ := d.root["servers"].([]any)
	if len(servers) != 1 {
		t.Fatalf("%d servers, want 1", len(servers))
	}
	if url := servers[0].(map[string]any)["url"]; url != client.APIPrefix {
		t.Errorf("servers[0].url = %v, want %q", url, client.APIPrefix)
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := newOAEnv(t, oaAnonymous, false)
	for _, hdr := range [][]string{nil, {"Authorization", "Basic bm9wZQ=="}} {
		rec := e.do(oaReq{method: http.MethodGet, path: "/openapi.json", hdr: hdr})
		if rec.Code != http.StatusOK {
			t.Fatalf("GET /openapi.json %v: status %d: %s", hdr, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		if !bytes.Equal(rec.Body.Bytes(), openAPIDoc) || !json.Valid(rec.Body.Bytes()) {
			t.Error("the served document is not the embedded one")
		}
	}
	doc := OpenAPI()
	if !bytes.Equal(doc, openAPIDoc) {
		t.Error("OpenAPI() differs from the embedded document")
	}
	doc[0] = 'x'
	if openAPIDoc[0] == 'x' {
		t.Error("OpenAPI() exposes the served bytes")
	}
}

// oaEnv is a handler with real API keys, a custom subdomain, throttling,
// and a way to make the authenticator fail (500).
type oaEnv struct {
	t *testing.T
	h http.Handler
}

const (
	oaAcme    = "Bearer llk_oa-acme"   // namespace acme, pro plan (metered)
	oaGlobex  = "Bearer llk_oa-globex" // namespace globex, pro plan
	oaDev     = "Bearer llk_oa-dev"    // namespace devco, developer plan
	oaOps     = "Bearer llk_oa-ops"    // namespace acme, ops plan (operator, metered)
	oaBroken  = "Bearer oa-broken"     // the authenticator returns a bad namespace: 500
	oaSubHost = "acme.locks.example.com"
)

type oaAnonymity int

const (
	oaAnonymous        oaAnonymity = iota // the developer plan, unmetered
	oaAnonymousLimited                    // the developer plan, one request and no more
)

func newOAEnv(t *testing.T, anon oaAnonymity, closed bool, svcOpts ...locklock.Option) *oaEnv {
	t.Helper()
	var rate float64
	if anon == oaAnonymousLimited {
		rate = 0.001 // the limiter's clock stands still: the bucket never refills
	}
	file := keys.File{
		Anonymous: &keys.AnonymousPolicy{Plan: "developer"},
		Plans: map[string]keys.Plan{
			"developer": {Rate: rate, Burst: 1},
			// Metered, so that acme's answers carry the RateLimit headers
			// and the test sees that they are documented wherever sent.
			"pro": {CustomNames: true, Rate: 0.001, Burst: 100000},
			"ops": {CustomNames: true, Operator: true, Rate: 0.001, Burst: 100000},
		},
		Keys: []keys.Key{
			{ID: "acme", Namespace: "acme", Plan: "pro", SHA256: keys.HashKey(strings.TrimPrefix(oaAcme, "Bearer "))},
			{ID: "globex", Namespace: "globex", Plan: "pro", SHA256: keys.HashKey(strings.TrimPrefix(oaGlobex, "Bearer "))},
			{ID: "dev", Namespace: "devco", Plan: "developer", SHA256: keys.HashKey(strings.TrimPrefix(oaDev, "Bearer "))},
			{ID: "ops", Namespace: "acme", Plan: "ops", SHA256: keys.HashKey(strings.TrimPrefix(oaOps, "Bearer "))},
		},
	}
	keyAuth := keyAuthenticator(keyauth.Access{Keys: keys.NewStore(keys.NewIndex(file)), BaseDomain: "locks.example.com"})
	auth := func(r *http.Request) (Caller, error) {
		if r.Header.Get("Authorization") == oaBroken {
			return Caller{Namespace: "Not A Namespace"}, nil
		}
		return keyAuth(r)
	}
	eng := memory.New()
	t.Cleanup(func() { _ = eng.Close() })
	if closed {
		_ = eng.Close()
	}
	frozen := time.Date(2026, 11, 26, 15, 4, 5, 0, time.UTC)
	h := NewHandler(locklock.NewService(eng, svcOpts...),
		WithAuthenticator(auth),
		WithRateLimiter(ratelimit.New(ratelimit.WithClock(func() time.Time { return frozen }))))
	return &oaEnv{t: t, h: h}
}

type oaReq struct {
	method, path, body string
	hdr                []string // name/value pairs; "Host" sets the request's host
	stream             bool     // an event stream: the client leaves after a moment
}

func (e *oaEnv) do(q oaReq) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRequest(q.method, "http://locklock.test"+q.path, strings.NewReader(q.body))
	if q.stream {
		ctx, cancel := context.WithTimeout(e.t.Context(), 200*time.Millisecond)
		defer cancel()
		r = r.WithContext(ctx)
	}
	for i := 0; i+1 < len(q.hdr); i += 2 {
		if q.hdr[i] == "Host" {
			r.Host = q.hdr[i+1]
			continue
		}
		r.Header.Add(q.hdr[i], q.hdr[i+1])
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	return rec
}

// oaCase is one request, the status it must provoke, and where the
// document describes it: an operation (path and the request's method) or,
// for answers not tied to an operation, a response component.
type oaCase struct {
	name      string
	env       *oaEnv
	req       oaReq
	status    int
	path      string // the document's path
	component string // instead of path: "#/components/responses/..."
	before    func() // run just before the request (moves a manual clock)
	// fill completes the request just before it is sent, with what
	// earlier answers gave (a slot's id).
	fill  func(q *oaReq)
	check func(t *testing.T, rec *httptest.ResponseRecorder)
}

// TestOpenAPIResponses drives the real handler through every documented
// status of every operation and checks each answer against the document.
func TestOpenAPIResponses(t *testing.T) {
	d := loadOpenAPI(t)
	main := newOAEnv(t, oaAnonymous, false)
	limited := newOAEnv(t, oaAnonymousLimited, false)
	down := newOAEnv(t, oaAnonymous, true)

	const (
		uuid1 = "180da65c-cf80-4997-8574-0c0801817d6f"
		uuid2 = "28e5a3c1-0b7e-4c43-9d4e-7a7b9e2f6a11"
		uuid3 = "9F0B5A4E-3C1D-4E2F-8A7B-6C5D4E3F2A1B" // upper case is the same UUID
	)
	type kind struct {
		doc       string
		path      func(name string) string
		a, b, bad string
		auth      []string // what a caller who may use the route sends
	}
	kinds := []kind{
		{"/lock/uuid/{uuid}", func(n string) string { return "/lock/uuid/" + n }, uuid1, uuid3, "not-a-uuid", nil},
		{"/lock/key/{name}", func(n string) string { return "/lock/key/" + n }, "nightly-report", "deploy:prod~1", "bad*name", []string{"Authorization", oaAcme}},
	}
	lockMethods := []string{http.MethodPost, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodPatch}
	bodyMethods := []string{http.MethodPost, http.MethodDelete, http.MethodPatch}
	with := func(base []string, kv ...string) []string { return append(slices.Clone(base), kv...) }
	bigBody := `{"secret":"` + strings.Repeat("x", maxBody) + `"}`

	var cases []oaCase
	add := func(env *oaEnv, name, docPath string, status int, q oaReq) {
		cases = append(cases, oaCase{name: name, env: env, req: q, status: status, path: docPath})
	}
	// The limited environment's one allowed request, which shows the
	// RateLimit headers on a success.
	add(limited, "anonymous, the one allowed request", kinds[0].doc, 201, oaReq{method: "POST", path: kinds[0].path(uuid2)})
	for _, k := range kinds {
		a, b := k.path(k.a), k.path(k.b)
		secret := `{"secret":"s3cret","expires_in":60}`
		add(main, "acquire", k.doc, 201, oaReq{method: "POST", path: a, body: secret, hdr: k.auth})
		add(main, "acquire again with the secret", k.doc, 200, oaReq{method: "POST", path: a, body: secret, hdr: k.auth})
		add(main, "acquire held", k.doc, 409, oaReq{method: "POST", path: a, hdr: k.auth})
		add(main, "acquire without body", k.doc, 201, oaReq{method: "POST", path: b, hdr: k.auth})
		add(main, "inspect", k.doc, 200, oaReq{method: "GET", path: a, hdr: k.auth})
		add(main, "inspect head", k.doc, 200, oaReq{method: "HEAD", path: a, hdr: k.auth})
		add(main, "refresh without secret", k.doc, 403, oaReq{method: "PATCH", path: a, body: `{"expires_in":300}`, hdr: k.auth})
		add(main, "refresh", k.doc, 200, oaReq{method: "PATCH", path: a, body: `{"expires_in":300}`, hdr: with(k.auth, "Locklock-Secret", "s3cret")})
		add(main, "refresh unprotected, no body", k.doc, 200, oaReq{method: "PATCH", path: b, hdr: k.auth})
		add(main, "release without secret", k.doc, 403, oaReq{method: "DELETE", path: a, hdr: k.auth})
		add(main, "release", k.doc, 200, oaReq{method: "DELETE", path: a, body: `{"secret":"s3cret"}`, hdr: k.auth})
		add(main, "release by header", k.doc, 200, oaReq{method: "DELETE", path: b, hdr: with(k.auth, "Locklock-Secret", "anything")})
		for _, m := range []string{http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodPatch} {
			add(main, "released lock", k.doc, 404, oaReq{method: m, path: a, hdr: k.auth})
		}
		for _, m := range lockMethods {
			add(main, "bad name", k.doc, 400, oaReq{method: m, path: k.path(k.bad), hdr: k.auth})
			add(main, "malformed Authorization", k.doc, 401, oaReq{method: m, path: a, hdr: []string{"Authorization", "Basic bm9wZQ=="}})
			add(main, "key of another namespace on a custom subdomain", k.doc, 403, oaReq{method: m, path: a, hdr: []string{"Host", oaSubHost, "Authorization", oaGlobex}})
			add(main, "authenticator bug", k.doc, 500, oaReq{method: m, path: a, hdr: []string{"Authorization", oaBroken}})
			add(down, "storage down", k.doc, 503, oaReq{method: m, path: a, hdr: []string{"Authorization", oaAcme}})
			add(limited, "anonymous over the rate", k.doc, 429, oaReq{method: m, path: a})
		}
		for _, m := range bodyMethods {
			add(main, "body too large", k.doc, 413, oaReq{method: m, path: b, body: bigBody, hdr: k.auth})
			add(main, "form body", k.doc, 415, oaReq{method: m, path: b, body: "secret=x", hdr: with(k.auth, "Content-Type", "application/x-www-form-urlencoded")})
			add(main, "unknown field", k.doc, 400, oaReq{method: m, path: b, body: `{"Secret":"x"}`, hdr: k.auth})
			add(main, "content coding", k.doc, 415, oaReq{method: m, path: b, body: `{}`, hdr: with(k.auth, "Content-Encoding", "gzip")})
			add(main, "secret with a control character", k.doc, 400, oaReq{method: m, path: b, body: `{"secret":"a\u0000"}`, hdr: k.auth})
		}
		for _, m := range lockMethods {
			add(main, "query parameter", k.doc, 400, oaReq{method: m, path: b + "?secret=abc", hdr: k.auth})
		}
		add(main, "new secret with a trailing space", k.doc, 400, oaReq{method: "POST", path: b, body: `{"secret":"s "}`, hdr: k.auth})
		add(main, "wait over the maximum", k.doc, 400, oaReq{method: "POST", path: b, body: `{"wait":61}`, hdr: k.auth})
		add(main, "header and body secrets differ", k.doc, 400, oaReq{method: "DELETE", path: b, body: `{"secret":"a"}`, hdr: with(k.auth, "Locklock-Secret", "b")})
	}
	key := kinds[1]
	add(main, "anonymous, custom name", key.doc, 401, oaReq{method: "POST", path: key.path("x")})
	add(main, "developer plan, custom name", key.doc, 403, oaReq{method: "POST", path: key.path("x"), hdr: []string{"Authorization", oaDev}})

	acme := []string{"Authorization", oaAcme}
	add(main, "setup", key.doc, 201, oaReq{method: "POST", path: key.path("job-1"), hdr: acme})
	add(main, "setup", key.doc, 201, oaReq{method: "POST", path: key.path("job-2"), body: `{"secret":"s"}`, hdr: acme})
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		add(main, "list", "/locks", 200, oaReq{method: m, path: "/locks?kind=key&prefix=job-", hdr: acme})
		add(main, "list without kind", "/locks", 400, oaReq{method: m, path: "/locks", hdr: acme})
		add(main, "list anonymous", "/locks", 401, oaReq{method: m, path: "/locks?kind=uuid"})
		add(main, "list on another namespace's subdomain", "/locks", 403, oaReq{method: m, path: "/locks?kind=uuid", hdr: []string{"Host", oaSubHost, "Authorization", oaGlobex}})
		add(main, "list, authenticator bug", "/locks", 500, oaReq{method: m, path: "/locks?kind=uuid", hdr: []string{"Authorization", oaBroken}})
		add(limited, "list over the rate", "/locks", 429, oaReq{method: m, path: "/locks?kind=uuid"})
		add(limited, "whoami over the rate", "/whoami", 429, oaReq{method: m, path: "/whoami"})
		add(down, "list, storage down", "/locks", 503, oaReq{method: m, path: "/locks?kind=uuid", hdr: acme})
	}
	cases = append(cases, oaCase{
		name: "list, first page", env: main, status: 200, path: "/locks",
		req: oaReq{method: "GET", path: "/locks?kind=key&prefix=job-&limit=1", hdr: acme},
		check: func(t *testing.T, rec *httptest.ResponseRecorder) {
			var page listJSON
			decodeStrict(t, rec.Body.Bytes(), &page)
			if len(page.Locks) != 1 || page.Next != "job-1" {
				t.Errorf("page %+v, want one lock and next job-1", page)
			}
		},
	})
	add(main, "list, next page", "/locks", 200, oaReq{method: "GET", path: "/locks?kind=key&prefix=job-&limit=1&after=job-1", hdr: acme})
	add(main, "list, unknown parameter", "/locks", 400, oaReq{method: "GET", path: "/locks?kind=uuid&sort=name", hdr: acme})
	add(main, "list, bad prefix", "/locks", 400, oaReq{method: "GET", path: "/locks?kind=key&prefix=a*", hdr: acme})
	cases = append(cases, oaLabelCases(t)...)
	cases = append(cases, oaForceCases(main)...)
	cases = append(cases, oaSemaphoreCases(main, limited, down)...)

	for _, m := range []string{http.MethodGet, http.MethodHead} {
		for _, env := range []*oaEnv{main, limited, down} {
			add(env, "document", "/openapi.json", 200, oaReq{method: m, path: "/openapi.json"})
		}
		add(main, "document with a bad key", "/openapi.json", 200, oaReq{method: m, path: "/openapi.json", hdr: []string{"Authorization", "Bearer nope"}})
		add(main, "document, cached", "/openapi.json", 304, oaReq{method: m, path: "/openapi.json", hdr: []string{"If-None-Match", `"old", ` + openAPIETag}})
		add(main, "document, cached weakly", "/openapi.json", 304, oaReq{method: m, path: "/openapi.json", hdr: []string{"If-None-Match", "W/" + openAPIETag}})
		add(main, "document, stale cache", "/openapi.json", 200, oaReq{method: m, path: "/openapi.json", hdr: []string{"If-None-Match", `"old"`}})
	}

	streams := []struct{ doc, path, bad string }{
		{"/lock/uuid/{uuid}/events", "/lock/uuid/" + uuid1 + "/events", "/lock/uuid/nope/events"},
		{"/lock/key/{name}/events", "/lock/key/job-1/events", "/lock/key/bad*name/events"},
		{"/events", "/events", "/events?kind=lock"},
		{"/semaphore/uuid/{uuid}/events", "/semaphore/uuid/" + uuid1 + "/events", "/semaphore/uuid/nope/events"},
		{"/semaphore/key/{name}/events", "/semaphore/key/pool/events", "/semaphore/key/bad*name/events"},
	}
	for _, s := range streams {
		add(main, "watch", s.doc, 200, oaReq{method: "GET", path: s.path, hdr: acme, stream: true})
		add(main, "watch, unknown parameter", s.doc, 400, oaReq{method: "GET", path: s.path + "?secret=x", hdr: acme})
		add(main, "watch, bad request", s.doc, 400, oaReq{method: "GET", path: s.bad, hdr: acme})
		add(main, "watch, malformed Authorization", s.doc, 401, oaReq{method: "GET", path: s.path, hdr: []string{"Authorization", "Basic bm9wZQ=="}})
		add(main, "watch on another namespace's subdomain", s.doc, 403, oaReq{method: "GET", path: s.path, hdr: []string{"Host", oaSubHost, "Authorization", oaGlobex}})
		add(main, "watch, authenticator bug", s.doc, 500, oaReq{method: "GET", path: s.path, hdr: []string{"Authorization", oaBroken}})
		add(limited, "watch over the rate", s.doc, 429, oaReq{method: "GET", path: s.path})
		add(down, "watch, storage down", s.doc, 503, oaReq{method: "GET", path: s.path, hdr: acme})
	}
	add(main, "watch anonymously", "/lock/uuid/{uuid}/events", 200, oaReq{method: "GET", path: "/lock/uuid/" + uuid2 + "/events", stream: true})
	add(main, "watch the namespace anonymously", "/events", 401, oaReq{method: "GET", path: "/events"})

	// Answers not tied to an operation: another method on a documented
	// path, and a path that is not documented.
	for path, methods := range d.documentedMethods() {
		concrete := strings.NewReplacer("{uuid}", uuid2, "{name}", "x", "{slot}", "Wq3x9Zt0Rr6uKp1LmN2b4A").Replace(path)
		for _, m := range []string{http.MethodPut, http.MethodOptions, http.MethodTrace, http.MethodPost, http.MethodDelete} {
			if slices.Contains(methods, m) {
				continue
			}
			allow := strings.Join(methods, ", ")
			cases = append(cases, oaCase{
				name: "method not allowed", env: main, status: 405, component: "#/components/responses/MethodNotAllowed",
				req: oaReq{method: m, path: concrete, body: "{}", hdr: acme},
				check: func(t *testing.T, rec *httptest.ResponseRecorder) {
					if got := rec.Header().Get("Allow"); got != allow {
						t.Errorf("Allow %q, want the documented %q", got, allow)
					}
				},
			})
		}
	}
	for _, p := range []string{"/", "/lock", "/lock/uuid", "/lock/other/x", "/locks/", "/openapi.yaml", "/v1/api/locks", "/semaphore", "/semaphore/uuid", "/semaphore/other/x", "/semaphores/"} {
		cases = append(cases, oaCase{name: "no route", env: main, status: 404, component: "#/components/responses/RouteNotFound", req: oaReq{method: "GET", path: p}})
	}

	// Run them in order (the main environment's state builds up).
	provoked := map[string]map[string]bool{} // "METHOD path" -> statuses
	metered := map[int]bool{}                // statuses seen with RateLimit headers
	for i, c := range cases {
		name := fmt.Sprintf("%03d %s %s %s", i, c.req.method, c.req.path, c.name)
		t.Run(name, func(t *testing.T) {
			if c.before != nil {
				c.before()
			}
			q := c.req
			if c.fill != nil {
				c.fill(&q)
			}
			rec := c.env.do(q)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			var resp map[string]any
			var ptr string
			if c.component != "" {
				resp, ptr = d.object(c.component)
			} else {
				op, opPtr, ok := d.operation(c.path, c.req.method)
				if !ok {
					t.Fatalf("%s %s is not documented", c.req.method, c.path)
				}
				responses, ok := op["responses"].(map[string]any)
				if !ok {
					t.Fatalf("%s has no responses", opPtr)
				}
				if _, ok := responses[strconv.Itoa(rec.Code)]; !ok {
					t.Fatalf("status %d is not documented for %s %s (%s): %s", rec.Code, c.req.method, c.path, opPtr, rec.Body)
				}
				resp, ptr = d.object(opPtr + "/responses/" + strconv.Itoa(rec.Code))
				key := c.req.method + " " + c.path
				if provoked[key] == nil {
					provoked[key] = map[string]bool{}
				}
				provoked[key][strconv.Itoa(rec.Code)] = true
			}
			d.checkResponse(t, resp, ptr, c.req.method, rec)
			if rec.Header().Get("RateLimit-Limit") != "" {
				metered[rec.Code] = true
			}
			if c.check != nil {
				c.check(t, rec)
			}
		})
	}

	// The RateLimit headers were seen (and so checked) beyond 429.
	for _, status := range []int{200, 201, 400, 403, 404, 409, 413, 415, 429, 503} {
		if !metered[status] {
			t.Errorf("no %d answer carried RateLimit headers; the check that they are documented is not exercised", status)
		}
	}

	// Every documented status of every operation was provoked: the
	// document promises nothing the handler does not do.
	for path, methods := range d.documentedMethods() {
		for _, m := range methods {
			op, _, _ := d.operation(path, m)
			responses, _ := op["responses"].(map[string]any)
			for status := range responses {
				if !provoked[m+" "+path][status] {
					t.Errorf("%s %s: documented status %s was never provoked by this test", m, path, status)
				}
			}
		}
	}
}

// checkResponse checks a recorded answer against a Response Object (at ptr):
// its body against the schema of its media type (or no body when none is
// documented) and its documented headers.
func (d *oaDoc) checkResponse(t *testing.T, resp map[string]any, ptr, method string, rec *httptest.ResponseRecorder) {
	t.Helper()
	content, hasContent := resp["content"].(map[string]any)
	switch {
	case method == http.MethodHead:
		if hasContent {
			t.Errorf("%s: a HEAD response documents content", ptr)
		}
		if rec.Body.Len() != 0 {
			t.Errorf("HEAD answered with a body")
		}
	case !hasContent:
		if rec.Body.Len() != 0 {
			t.Errorf("%s documents no body, got %s", ptr, rec.Body)
		}
	default:
		mt, _, err := mime.ParseMediaType(rec.Header().Get("Content-Type"))
		if err != nil {
			t.Fatalf("Content-Type %q: %v", rec.Header().Get("Content-Type"), err)
		}
		if _, ok := content[mt]; !ok {
			t.Fatalf("%s: Content-Type %s is not documented (%v)", ptr, mt, slices.Sorted(maps.Keys(content)))
		}
		if mt == "text/event-stream" {
			d.checkEventStream(t, rec.Body.String())
			break
		}
		body, err := jsonschema.UnmarshalJSON(bytes.NewReader(rec.Body.Bytes()))
		if err != nil {
			t.Fatalf("body is not JSON: %v: %s", err, rec.Body)
		}
		if err := d.schema(ptr + "/content/" + oaEscape(mt) + "/schema").Validate(body); err != nil {
			t.Errorf("body does not fit %s/content/%s/schema:\n%v\nbody: %s", ptr, mt, err, rec.Body)
		}
	}
	headers, _ := resp["headers"].(map[string]any)
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		h, hPtr := d.object(ptr + "/headers/" + oaEscape(name))
		values := rec.Header().Values(name)
		if len(values) == 0 {
			if h["required"] == true {
				t.Errorf("header %s is documented as required but missing", name)
			}
			continue
		}
		var v any = values[0]
		schema, sPtr := d.object(hPtr + "/schema")
		if schema["type"] == "integer" {
			v = json.Number(values[0])
			if _, err := strconv.ParseInt(values[0], 10, 64); err != nil {
				t.Errorf("header %s: %q is not an integer", name, values[0])
				continue
			}
		}
		if err := d.schema(sPtr).Validate(v); err != nil {
			t.Errorf("header %s: %q does not fit %s: %v", name, values[0], sPtr, err)
		}
	}
	// The headers that matter to clients are documented wherever they
	// are sent.
	for _, name := range []string{"Retry-After", "WWW-Authenticate", "Allow", "ETag", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
		if rec.Header().Get(name) == "" {
			continue
		}
		if _, ok := headers[name]; !ok {
			t.Errorf("%s: header %s is sent but not documented", ptr, name)
		}
	}
}

// checkEventStream checks a stream's frames against the document: each
// has an event type; state and lock events have an id and data that fit
// their schemas.
func (d *oaDoc) checkEventStream(t *testing.T, body string) {
	t.Helper()
	frames := strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n")
	if len(frames) == 0 || body == "" {
		t.Fatal("an event stream without events (a new stream starts with state or ready)")
	}
	for _, frame := range frames {
		fields := map[string]string{}
		for line := range strings.SplitSeq(frame, "\n") {
			name, value, _ := strings.Cut(line, ": ")
			fields[name] = value
		}
		schema := map[string]string{
			"state": "#/components/schemas/StreamState", "acquired": "#/components/schemas/LockEvent",
			"refreshed": "#/components/schemas/LockEvent", "released": "#/components/schemas/LockEvent",
			"expired": "#/components/schemas/LockEvent", "revoked": "#/components/schemas/LockEvent",
		}[fields["event"]]
		switch {
		case fields["event"] == "ready" || fields["event"] == "reset":
			if fields["data"] != "{}" {
				t.Errorf("%s event with data %q, want {}", fields["event"], fields["data"])
			}
		case schema == "":
			t.Errorf("undocumented event %q", frame)
			continue
		}
		if fields["id"] == "" && fields["event"] != "reset" {
			t.Errorf("event without an id: %q", frame)
		}
		if schema != "" {
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(fields["data"]))
			if err != nil {
				t.Fatalf("event data is not JSON: %v: %q", err, frame)
			}
			if err := d.schema(schema).Validate(v); err != nil {
				t.Errorf("event data does not fit %s: %v: %q", schema, err, frame)
			}
		}
	}
}
