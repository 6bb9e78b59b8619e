package caddymodule

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// provisioned is an account of kind built from cfg, as the app builds it, in region RU.
func provisioned(t testing.TB, kind, name string, cfg pbx.Config) pbx.Account {
	t.Helper()
	acc, err := cfg.Provision(name, pbx.Env{
		Origin: event.Origin{PBX: kind, Account: name, Region: "RU"},
		Expand: func(s string) string { return s },
		Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

// The PBX is the unit (docs/development.md, Adding a PBX): outside a kind's own package no
// code compares anything with a kind's name, and no package but this one (and cmd/) imports
// Caddy.
func TestKindsStayInTheirPackages(t *testing.T) {
	root := filepath.Join("..")
	var names []string
	for _, k := range kinds {
		names = append(names, regexp.QuoteMeta(k.Name))
	}
	compared := regexp.MustCompile(`(==|!=|case)\s*"(` + strings.Join(names, "|") + `)"`)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range compared.FindAllSubmatch(src, -1) {
			if rel, _ := filepath.Rel(root, path); !strings.HasPrefix(filepath.ToSlash(rel), "pbx/"+string(m[2])+"/") {
				t.Errorf("%s compares with the kind name %q: ask the account instead", rel, m[2])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, " ")
		glue := strings.HasSuffix(pkg, "/caddymodule") || strings.Contains(pkg, "/cmd/")
		if strings.Contains(imports, "github.com/caddyserver/caddy") && !glue {
			t.Errorf("%s imports Caddy: only caddymodule and cmd/ may", pkg)
		}
	}
}
