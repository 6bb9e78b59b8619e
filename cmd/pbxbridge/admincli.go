package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/pbxbridge/pbxbridge/delivery"
)

// Exit statuses of the operator commands, for scripts.
const (
	exitOK       = 0
	exitFailed   = 1 // the gateway could not be reached, or it answered with an error
	exitUsage    = 2
	exitNotFound = 3
)

const adminExitCodes = `
The admin endpoint is --address, else the admin address in --config, else Caddy's default
(localhost:2019), as for 'pbxbridge stop' and 'pbxbridge reload'. --json prints the admin
API's JSON instead of a table.

Exit status: 0 ok; 1 the gateway could not be reached or answered with an error; 2 usage
error; 3 no such dead letter or target.`

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "dead-letters",
		Usage: "list|show|replay|delete|purge [--address <admin address>] [--json]",
		Short: "Lists, shows, replays and removes the events a CRM would not take",
		Long: `
Operates the dead letters of the running gateway. A dead letter's id is <target>/<event id>.

  dead-letters list [--target <name>]     oldest first
  dead-letters show <target>/<event id>   the attempt count, the CRM's last answer, the event
  dead-letters replay <target>/<event id> queue it again for its target, same event id (the
                                          CRM sees the same webhook-id), behind its call's
                                          queued events
  dead-letters replay --target <name>     replay all of a target's dead letters
  dead-letters delete <target>/<event id>
  dead-letters purge --target <name>      remove all of a target's dead letters
` + adminExitCodes,
		CobraFunc: func(cmd *cobra.Command) {
			adminFlags(cmd)
			list := operatorCommand("list", "List dead letters, oldest first", listDeadLetters)
			list.Flags().String("target", "", "only this target's dead letters")
			replay := operatorCommand("replay <target>/<event id> | --target <name>", "Queue dead letters again for their target", replayDeadLetters)
			replay.Flags().String("target", "", "replay all of this target's dead letters")
			purge := operatorCommand("purge --target <name>", "Remove all of a target's dead letters", purgeDeadLetters)
			purge.Flags().String("target", "", "the target whose dead letters to remove")
			cmd.AddCommand(list,
				operatorCommand("show <target>/<event id>", "Show one dead letter with its event", showDeadLetter),
				replay,
				operatorCommand("delete <target>/<event id>", "Remove one dead letter", deleteDeadLetter),
				purge)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "targets",
		Usage: "status|pause|resume [--address <admin address>] [--json]",
		Short: "Shows the queue and the CRM targets; pauses and resumes delivery",
		Long: `
  targets status          queue readiness, store use, and per target: depth, age of the oldest
                          undelivered event, attempts in flight, circuit, paused, dead letters
  targets pause <name>    stop delivering to a target (CRM maintenance); events keep queueing
  targets resume <name>   deliver again
` + adminExitCodes,
		CobraFunc: func(cmd *cobra.Command) {
			adminFlags(cmd)
			cmd.AddCommand(
				operatorCommand("status", "Show the queue and every target", targetsStatus),
				operatorCommand("pause <name>", "Stop delivering to a target; events keep queueing", pauseTarget),
				operatorCommand("resume <name>", "Deliver to a paused target again", resumeTarget))
		},
	})
}

// adminFlags are the flags every operator command shares. A parent without a subcommand, or
// a bad flag, is a usage error (exit 2); cobra would otherwise print help and exit 0, or 1.
func adminFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.String("address", "", "the admin endpoint of the gateway (default: from --config, else localhost:2019)")
	f.StringP("config", "c", "", "configuration file to read the admin address from, if --address is not used")
	f.StringP("adapter", "a", "", "name of the config adapter of --config")
	f.Bool("json", false, "print the admin API's JSON")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return exitWith(c, exitUsage, err)
	})
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return exitWith(c, exitUsage, fmt.Errorf("unknown subcommand %q; see '%s --help'", args[0], c.CommandPath()))
		}
		return exitWith(c, exitUsage, fmt.Errorf("a subcommand is needed; see '%s --help'", c.CommandPath()))
	}
}

// exitWith ends a command with an exit status: Caddy's Main takes statuses other than 1 only
// from commands wrapped by WrapCommandFuncForCobra.
func exitWith(cmd *cobra.Command, status int, err error) error {
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return status, err })(cmd, nil)
}

// operatorCommand is a subcommand whose exit status is that of run.
func operatorCommand(use, short string, run func(caddycmd.Flags) (int, error)) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: cobra.ArbitraryArgs, RunE: caddycmd.WrapCommandFuncForCobra(run)}
}

func listDeadLetters(fl caddycmd.Flags) (int, error) {
	if fl.NArg() > 0 {
		return exitUsage, errors.New("list takes no arguments; --target <name> selects a target")
	}
	path := "/pbx/dead-letters"
	if t := fl.String("target"); t != "" {
		path += "?target=" + url.QueryEscape(t)
	}
	var dls []delivery.DeadLetter
	return adminCall(fl, http.MethodGet, path, &dls, func(w io.Writer) {
		if len(dls) == 0 {
			fmt.Fprintln(w, "no dead letters")
			return
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTYPE\tCALL\tATTEMPTS\tSTATUS\tDEAD\tLAST ERROR")
		for _, dl := range dls {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s ago\t%s\n", dl.ID, dl.Type, dl.CallID, dl.Attempts,
				httpStatus(dl.Status), age(dl.DeadAt), shorten(dl.LastError, 60))
		}
		tw.Flush()
	})
}

func showDeadLetter(fl caddycmd.Flags) (int, error) {
	path, err := deadLetterPath(fl, "show")
	if err != nil {
		return exitUsage, err
	}
	var dl delivery.DeadLetter
	return adminCall(fl, http.MethodGet, path, &dl, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "id:\t%s\n", dl.ID)
		fmt.Fprintf(tw, "target:\t%s\n", dl.Target)
		fmt.Fprintf(tw, "type:\t%s\n", dl.Type)
		fmt.Fprintf(tw, "call_id:\t%s\n", dl.CallID)
		fmt.Fprintf(tw, "attempts:\t%d\n", dl.Attempts)
		fmt.Fprintf(tw, "status:\t%s\n", httpStatus(dl.Status))
		fmt.Fprintf(tw, "reason:\t%s\n", dl.Reason)
		fmt.Fprintf(tw, "dead_at:\t%s (%s ago)\n", dl.DeadAt.Format(time.RFC3339), age(dl.DeadAt))
		fmt.Fprintf(tw, "last_error:\t%s\n", dl.LastError)
		tw.Flush()
		fmt.Fprintf(w, "event:\n%s\n", prettyJSON(dl.Event))
	})
}

func replayDeadLetters(fl caddycmd.Flags) (int, error) {
	target := fl.String("target")
	if target != "" {
		if fl.NArg() > 0 {
			return exitUsage, errors.New("replay takes either <target>/<event id> or --target <name>, not both")
		}
		var res struct{ Replayed int }
		return adminCall(fl, http.MethodPost, "/pbx/dead-letters/replay?target="+url.QueryEscape(target), &res, func(w io.Writer) {
			fmt.Fprintf(w, "replayed %s of %s\n", deadLetters(res.Replayed), target)
		})
	}
	path, err := deadLetterPath(fl, "replay")
	if err != nil {
		return exitUsage, err
	}
	return adminCall(fl, http.MethodPost, path+"/replay", nil, func(w io.Writer) {
		fmt.Fprintf(w, "replayed %s\n", fl.Arg(0))
	})
}

func deleteDeadLetter(fl caddycmd.Flags) (int, error) {
	path, err := deadLetterPath(fl, "delete")
	if err != nil {
		return exitUsage, err
	}
	return adminCall(fl, http.MethodDelete, path, nil, func(w io.Writer) {
		fmt.Fprintf(w, "deleted %s\n", fl.Arg(0))
	})
}

func purgeDeadLetters(fl caddycmd.Flags) (int, error) {
	target := fl.String("target")
	if target == "" || fl.NArg() > 0 {
		return exitUsage, errors.New("purge needs --target <name> and no arguments")
	}
	var res struct{ Purged int }
	return adminCall(fl, http.MethodDelete, "/pbx/dead-letters?target="+url.QueryEscape(target), &res, func(w io.Writer) {
		fmt.Fprintf(w, "purged %s of %s\n", deadLetters(res.Purged), target)
	})
}

// deadLetterPath is the admin path of the dead letter named by the one argument.
func deadLetterPath(fl caddycmd.Flags, verb string) (string, error) {
	if fl.NArg() != 1 {
		return "", fmt.Errorf("%s needs one dead letter id: <target>/<event id>", verb)
	}
	target, id, ok := strings.Cut(fl.Arg(0), "/")
	if !ok || target == "" || id == "" || strings.Contains(id, "/") {
		return "", fmt.Errorf("%q is not a dead letter id: <target>/<event id>, as 'dead-letters list' shows", fl.Arg(0))
	}
	return "/pbx/dead-letters/" + url.PathEscape(target) + "/" + url.PathEscape(id), nil
}

func targetsStatus(fl caddycmd.Flags) (int, error) {
	if fl.NArg() > 0 {
		return exitUsage, errors.New("status takes no arguments")
	}
	var st delivery.Status
	return adminCall(fl, http.MethodGet, "/pbx/status", &st, func(w io.Writer) {
		ready := "ready"
		if !st.Ready {
			ready = "NOT READY (webhooks get 503)"
		}
		fmt.Fprintf(w, "queue %s, store %s of %s\n", ready, humanize.IBytes(st.StoreBytes), humanize.IBytes(uint64(st.MaxStore)))
		slices.SortFunc(st.Targets, func(a, b delivery.TargetStatus) int { return strings.Compare(a.Name, b.Name) })
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TARGET\tDEPTH\tOLDEST\tIN FLIGHT\tHELD\tCIRCUIT\tPAUSED\tDEAD LETTERS")
		for _, t := range st.Targets {
			oldest := "-"
			if t.OldestAgeSeconds > 0 {
				oldest = round(time.Duration(t.OldestAgeSeconds * float64(time.Second)))
			}
			circuit, paused := "closed", "no"
			if t.CircuitOpen {
				circuit = "OPEN"
			}
			if t.Paused {
				paused = "PAUSED"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%d\n", t.Name, t.Depth, oldest, t.InFlight, t.Held, circuit, paused, t.DeadLetters)
		}
		tw.Flush()
	})
}

func pauseTarget(fl caddycmd.Flags) (int, error)  { return setPaused(fl, "pause") }
func resumeTarget(fl caddycmd.Flags) (int, error) { return setPaused(fl, "resume") }

func setPaused(fl caddycmd.Flags, verb string) (int, error) {
	if fl.NArg() != 1 || fl.Arg(0) == "" {
		return exitUsage, fmt.Errorf("%s needs one target name", verb)
	}
	name := fl.Arg(0)
	return adminCall(fl, http.MethodPost, "/pbx/targets/"+url.PathEscape(name)+"/"+verb, nil, func(w io.Writer) {
		fmt.Fprintf(w, "%sd %s\n", verb, name)
	})
}

// adminCall sends one request to the gateway's admin endpoint, decodes the answer into out
// (when not nil) and prints it: the API's JSON with --json, else what human prints.
func adminCall(fl caddycmd.Flags, method, path string, out any, human func(io.Writer)) (int, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return exitFailed, fmt.Errorf("the admin address: %v", err)
	}
	resp, err := adminRequest(addr, method, path)
	if err != nil {
		return exitFailed, fmt.Errorf("the gateway's admin endpoint: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return exitFailed, fmt.Errorf("reading the gateway's answer: %v", err)
	}
	if resp.StatusCode >= 400 {
		return adminFailure(method, path, resp.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return exitFailed, fmt.Errorf("the gateway's answer is not what pbxbridge expects (is %s a pbxbridge admin endpoint?): %v", addr, err)
		}
	}
	if fl.Bool("json") {
		os.Stdout.Write(body)
		return exitOK, nil
	}
	human(os.Stdout)
	return exitOK, nil
}

// adminRequest sends one request to Caddy's admin endpoint as caddycmd.AdminAPIRequest does
// (the same dial, Host and Origin), but returns every answer: AdminAPIRequest turns one of 400
// or more into an error text, and the status is what tells "not found" from a failure.
func adminRequest(adminAddr, method, path string) (*http.Response, error) {
	addr, err := caddy.ParseNetworkAddress(adminAddr)
	if err != nil || addr.PortRangeSize() > 1 {
		return nil, fmt.Errorf("invalid admin address %s: %v", adminAddr, err)
	}
	origin := "http://" + addr.JoinHostPort(0)
	socket := addr.IsUnixNetwork() || addr.IsFdNetwork()
	if socket {
		origin = "http://127.0.0.1"                   // the Host Caddy's admin accepts on a socket
		addr.Host, _, _ = strings.Cut(addr.Host, "|") // a unix socket's permission bits
	}
	req, err := http.NewRequest(method, origin+path, nil)
	if err != nil {
		return nil, fmt.Errorf("making request: %v", err)
	}
	if !socket {
		req.Header.Set("Origin", origin)
	}
	client := http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, addr.Network, addr.JoinHostPort(0))
		},
	}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("performing request: %v", err)
	}
	return resp, nil
}

// adminFailure is the exit status and message of an answer of 400 or more: the API's
// {"error": ...} when it sent one, else its text.
func adminFailure(method, path string, status int, body []byte) (int, error) {
	msg := strings.TrimSpace(string(body))
	var apiErr struct{ Error string }
	if json.Unmarshal(body, &apiErr) == nil && apiErr.Error != "" {
		msg = apiErr.Error
	}
	if status == http.StatusNotFound {
		return exitNotFound, fmt.Errorf("%s %s: %s (HTTP %d)", method, path, msg, status)
	}
	return exitFailed, fmt.Errorf("%s %s: the gateway answered HTTP %d: %s", method, path, status, msg)
}

func deadLetters(n int) string {
	if n == 1 {
		return "1 dead letter"
	}
	return fmt.Sprintf("%d dead letters", n)
}

func httpStatus(code int) string {
	if code == 0 {
		return "-"
	}
	return strconv.Itoa(code)
}

// age is how long ago t was, to the unit that matters.
func age(t time.Time) string { return round(time.Since(t)) }

func round(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours()/24), int(d.Hours())%24)
}

// shorten keeps the first line of s, at most n runes.
func shorten(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
