package bitrix24

import (
	"context"

	"github.com/pbxbridge/pbxbridge/crm"
)

// Installation is conn's stored installation.
func Installation(ctx context.Context, conn crm.Connector) (*install, error) {
	in, _, err := conn.(*connector).loadInstall(ctx)
	return in, err
}

var CommandIDFor = commandIDFor

// Classify is what the dispatcher hears of a method the portal refused.
func Classify(status int, code, desc string) crm.Result {
	return result(classify(&apiError{status: status, code: code, desc: desc, method: "m"}))
}
