package caddymodule

import (
	"strings"

	"github.com/pbxbridge/pbxbridge/pbx"
)

// bearerMatches checks an Authorization header against want: the scheme Bearer (any case,
// RFC 9110 §11.1), one space, then exactly the token (RFC 6750 §2.1). `Bearer  <token>` with
// two spaces is a wrong token.
func bearerMatches(authorization, want string) bool {
	scheme, token, ok := strings.Cut(authorization, " ")
	return ok && strings.EqualFold(scheme, "Bearer") && pbx.SecretMatches(token, want)
}
