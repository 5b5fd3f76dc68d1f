package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/locklock/locklock/internal/keys"
)

// keysCommand is `locklock keys new|list` (API.md §5).
func keysCommand(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	if len(args) == 0 {
		keysUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "new":
		return keysNew(args[1:], stdout, stderr, env)
	case "list":
		return keysList(args[1:], stdout, stderr, env)
	case "help", "-h", "--help", "-help":
		keysUsage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "locklock keys: unknown command %q\n", args[0])
		keysUsage(stderr)
		return exitUsage
	}
}

func keysUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: locklock keys <command> [flags]

Commands:
  new    make an API key, add its entry to the keys file and print the key
  list   show the anonymous policy, the plans and the keys of a keys file

Run 'locklock keys new -h' or 'locklock keys list -h' for their flags.
`)
}

func keysNew(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	const name = "locklock keys new"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("keys-file", "", "JSON `file` of plans and API keys; created with the default plans if missing (required)")
	namespace := fs.String("namespace", "", "`namespace` the key works in (required)")
	plan := fs.String("plan", "", "`plan` of the key: developer, pro, or one the keys file defines (required)")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: locklock keys new --keys-file F --namespace NS --plan PLAN [--id ID]

Makes a random API key, appends its id, namespace, plan and SHA-256 to the keys
file, and prints the key alone on standard output. The key itself is written
nowhere: keep it now. Running servers pick the new entry up on SIGHUP.

--keys-file, --namespace and --plan can also be set as LOCKLOCK_KEYS_FILE,
LOCKLOCK_NAMESPACE and LOCKLOCK_PLAN; --id only on the command line.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := applyEnv(fs, env); err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return exitUsage
	}
	// Defined after applyEnv: an id from the environment would be the same
	// for every key, and every key but the first would be refused.
	id := fs.String("id", "", "`id` of the key, unique in the file (default <namespace>-<8 random hex digits>)")
	if code, ok := keysParseFlags(fs, args, name, stderr); !ok {
		return code
	}
	var missing []string
	for _, f := range []struct{ flag, value string }{{"keys-file", *file}, {"namespace", *namespace}, {"plan", *plan}} {
		if f.value == "" {
			missing = append(missing, "--"+f.flag)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "%s: missing %s (see %s -h)\n", name, strings.Join(missing, ", "), name)
		return exitUsage
	}
	if *id == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			fmt.Fprintln(stderr, name+":", err)
			return exitError
		}
		*id = *namespace + "-" + hex.EncodeToString(b[:])
	}

	key, err := keys.NewKey()
	if err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return exitError
	}
	_, statErr := os.Stat(*file)
	created := errors.Is(statErr, os.ErrNotExist)
	entry := keys.Key{ID: *id, Namespace: *namespace, Plan: *plan, SHA256: keys.HashKey(key)}
	if err := keys.AppendKey(*file, entry); err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return exitError
	}
	if _, err := fmt.Fprintln(stdout, key); err != nil {
		fmt.Fprintf(stderr, "%s: key %q was added to %s but could not be printed (%v); remove its entry and make another\n", name, *id, *file, err)
		return exitError
	}
	what := fmt.Sprintf("key %q (namespace %s, plan %s)", *id, *namespace, *plan)
	if created {
		fmt.Fprintf(stderr, "created %s with the default plans and added %s", *file, what)
	} else {
		fmt.Fprintf(stderr, "added %s to %s", what, *file)
	}
	fmt.Fprintln(stderr, `; send it as "Authorization: Bearer <key>"; running servers pick it up on SIGHUP`)
	return exitOK
}

func keysList(args []string, stdout, stderr io.Writer, env func(string) (string, bool)) int {
	const name = "locklock keys list"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("keys-file", "", "JSON `file` of plans and API keys (required; also LOCKLOCK_KEYS_FILE)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: locklock keys list --keys-file F\n\nShows the anonymous policy, the plans and the keys (id, namespace, plan) of a keys file.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := applyEnv(fs, env); err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return exitUsage
	}
	if code, ok := keysParseFlags(fs, args, name, stderr); !ok {
		return code
	}
	if *file == "" {
		fmt.Fprintf(stderr, "%s: missing --keys-file (see %s -h)\n", name, name)
		return exitUsage
	}
	f, err := keys.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return exitError
	}
	if err := writeKeysList(stdout, f); err != nil {
		fmt.Fprintln(stderr, name+":", err)
		return exitError
	}
	return exitOK
}

// writeKeysList prints f for people: never a hash.
func writeKeysList(w io.Writer, f keys.File) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if f.Anonymous == nil {
		fmt.Fprintln(tw, "anonymous: off")
	} else {
		fmt.Fprintf(tw, "anonymous: plan %s\n", f.Anonymous.Plan)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "PLAN\tCUSTOM_NAMES\tOPERATOR\tRATE\tBURST")
	names := make([]string, 0, len(f.Plans))
	for n := range f.Plans {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := f.Plans[n]
		rate, burst := "unlimited", "-"
		if p.Rate > 0 {
			rate = strconv.FormatFloat(p.Rate, 'g', -1, 64) + "/s"
			burst = strconv.Itoa(p.Burst)
		}
		fmt.Fprintf(tw, "%s\t%t\t%t\t%s\t%s\n", n, p.CustomNames, p.Operator, rate, burst)
	}
	fmt.Fprintln(tw)
	if len(f.Keys) == 0 {
		fmt.Fprintln(tw, "no keys")
	} else {
		fmt.Fprintln(tw, "ID\tNAMESPACE\tPLAN")
		for _, k := range f.Keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", k.ID, k.Namespace, k.Plan)
		}
	}
	return tw.Flush()
}

// keysParseFlags parses args; ok is false when the command should end with
// code (help asked for, a bad flag, or a stray argument).
func keysParseFlags(fs *flag.FlagSet, args []string, name string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		return exitUsage, false
	}
	return 0, true
}
