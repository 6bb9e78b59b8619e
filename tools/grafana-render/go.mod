module github.com/pbxbridge/pbxbridge/tools/grafana-render

go 1.26.0
