// Command pbxbridge is Caddy with Caddy's standard modules and pbxbridge's: run it like caddy
// (`pbxbridge run --config Caddyfile`), plus subcommands to try and operate the gateway.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/pbxbridge/pbxbridge/caddymodule"
)

func main() {
	caddycmd.Main()
}
