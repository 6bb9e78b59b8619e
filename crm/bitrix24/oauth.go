package bitrix24

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/crm"
)

// installKey holds the application's installation: the OAuth pair and application_token, in
// one value so that one compare-and-set covers them.
const installKey = "install"

const (
	// refreshMargin: a token this close to its expiry (or a quarter of its lifetime, if
	// shorter) is refreshed before it is used.
	refreshMargin = 5 * time.Minute
	// refreshLease: how long a gateway's claim to refresh holds the others back, should it
	// die meanwhile.
	refreshLease = 30 * time.Second
	// refreshPoll: how often a gateway waiting for another's refresh looks at the store.
	refreshPoll = 100 * time.Millisecond
)

// install is the stored installation.
type install struct {
	Status           string    `json:"status"` // installed | uninstalled
	MemberID         string    `json:"member_id"`
	Domain           string    `json:"domain"`
	ApplicationToken string    `json:"application_token,omitempty"`
	AccessToken      string    `json:"access_token,omitempty"`
	RefreshToken     string    `json:"refresh_token,omitempty"`
	Expires          time.Time `json:"expires"`
	Issued           time.Time `json:"issued"`
	// Refreshing is when the claim of the gateway now refreshing the pair lapses.
	Refreshing time.Time `json:"refreshing,omitzero"`
	At         time.Time `json:"at"`
}

const (
	statusInstalled   = "installed"
	statusUninstalled = "uninstalled"
)

// fresh says the access token is not yet due for a refresh.
func (in *install) fresh() bool {
	margin := min(refreshMargin, in.Expires.Sub(in.Issued)/4)
	return time.Until(in.Expires) > margin
}

func (c *connector) loadInstall(ctx context.Context) (*install, uint64, error) {
	st, err := c.state(ctx)
	if err != nil {
		return nil, 0, err
	}
	raw, rev, err := st.Get(ctx, installKey)
	if errors.Is(err, crm.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	in := new(install)
	if err := json.Unmarshal(raw, in); err != nil {
		return nil, 0, fmt.Errorf("bitrix24: stored installation: %w", err)
	}
	return in, rev, nil
}

func (c *connector) storeInstall(ctx context.Context, in *install, rev uint64) (uint64, error) {
	st, err := c.state(ctx)
	if err != nil {
		return 0, err
	}
	raw, err := json.Marshal(in)
	if err != nil {
		return 0, err
	}
	return st.Put(ctx, installKey, raw, rev, 0) // the tokens stay
}

// installed is the stored installation, or why the target cannot deliver.
func (c *connector) installed(ctx context.Context) (*install, uint64, error) {
	in, rev, err := c.loadInstall(ctx)
	switch {
	case err != nil:
		return nil, 0, err
	case in == nil:
		return nil, 0, down("not_installed", "bitrix24: the application is not installed on %s yet: "+
			"create the local application with this target's URLs (docs/bitrix24.md)", c.domain)
	case in.Status == statusUninstalled:
		return nil, 0, down("uninstalled", "bitrix24: the application was uninstalled from %s at %s: "+
			"install it again (docs/bitrix24.md); the backlog is kept", c.domain, in.At.Format(time.RFC3339))
	}
	return in, rev, nil
}

// accessToken is the stored access token, refreshed first when it is about to expire.
func (c *connector) accessToken(ctx context.Context) (string, error) {
	in, _, err := c.installed(ctx)
	if err != nil {
		return "", err
	}
	if in.fresh() {
		return in.AccessToken, nil
	}
	return c.refresh(ctx, in.AccessToken)
}

// refresh replaces the pair whose access token is stale, once across the cluster: a gateway
// claims the refresh with a compare-and-set on the stored installation, and the others wait
// for the new pair it stores. A refresh token is good for one refresh only.
func (c *connector) refresh(ctx context.Context, stale string) (string, error) {
	c.tokens.Lock()
	defer c.tokens.Unlock()
	for {
		in, rev, err := c.installed(ctx)
		if err != nil {
			return "", err
		}
		now := time.Now()
		if in.AccessToken != stale && in.fresh() {
			return in.AccessToken, nil
		}
		if in.Refreshing.After(now) {
			select {
			case <-time.After(refreshPoll):
				continue
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		in.Refreshing = now.Add(refreshLease)
		rev, err = c.storeInstall(ctx, in, rev)
		if errors.Is(err, crm.ErrConflict) {
			continue
		}
		if err != nil {
			return "", err
		}
		pair, err := c.oauthRefresh(ctx, in.RefreshToken)
		in.Refreshing = time.Time{}
		if err != nil {
			metrics.refreshes.WithLabelValues(c.target, "failed").Inc()
			if _, perr := c.storeInstall(ctx, in, rev); perr != nil {
				c.log.Warn("releasing the token refresh claim", zap.Error(perr))
			}
			c.log.Error("token refresh failed", zap.Error(err))
			return "", err
		}
		in.AccessToken, in.RefreshToken, in.Expires, in.Issued = pair.AccessToken, pair.RefreshToken, pair.expiry(now), now
		if _, err := c.storeInstall(ctx, in, rev); err != nil {
			// The pair is spent once the OAuth server answered; losing it means a reinstall.
			metrics.refreshes.WithLabelValues(c.target, "failed").Inc()
			return "", fmt.Errorf("bitrix24: storing the refreshed token pair: %w", err)
		}
		metrics.refreshes.WithLabelValues(c.target, "ok").Inc()
		c.log.Info("token refreshed", zap.Time("expires", in.Expires))
		return in.AccessToken, nil
	}
}

// tokenPair is the OAuth server's answer.
type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Expires      int64  `json:"expires"`
	ExpiresIn    int64  `json:"expires_in"`
	errorBody
}

func (p tokenPair) expiry(now time.Time) time.Time {
	if p.Expires > 0 {
		return time.Unix(p.Expires, 0)
	}
	return now.Add(time.Duration(p.ExpiresIn) * time.Second)
}

// oauthRefresh trades a refresh token for a new pair.
func (c *connector) oauthRefresh(ctx context.Context, refreshToken string) (*tokenPair, error) {
	q := url.Values{"grant_type": {"refresh_token"}, "client_id": {c.clientID},
		"client_secret": {c.clientSecret}, "refresh_token": {refreshToken}}
	endpoint := c.oauthURL + "/oauth/token/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.env.UserAgent)
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("bitrix24 token refresh: %s", scrub(err, endpoint+"?"+q.Encode()))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var pair tokenPair
	if json.Unmarshal(body, &pair) != nil {
		return nil, fmt.Errorf("bitrix24 token refresh: HTTP %d from the OAuth server", resp.StatusCode)
	}
	if pair.Error != "" {
		if resp.StatusCode >= 500 {
			return nil, fmt.Errorf("bitrix24 token refresh: %s: %s", pair.Error, pair.Description)
		}
		return nil, down("refresh", "bitrix24: the OAuth server refused to refresh the token (%s: %s): "+
			"install the application again (docs/bitrix24.md)", pair.Error, pair.Description)
	}
	if pair.AccessToken == "" || pair.RefreshToken == "" {
		return nil, fmt.Errorf("bitrix24 token refresh: HTTP %d without a token pair", resp.StatusCode)
	}
	return &pair, nil
}
