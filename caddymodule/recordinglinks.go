package caddymodule

import (
	"errors"
	"time"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/recording"
)

// setRecordingLinks is called by a pbx_recordings handler with a public_url when it is
// provisioned: from then on this config's Mango recording events carry its links. A reload
// provisions a new App and new handlers, so links always come from the running config.
func (a *App) setRecordingLinks(l *recording.Links) error {
	if a.recordingLinks != nil && !a.recordingLinks.Same(l) {
		return errors.New("another pbx_recordings handler already sets public_url with a different token, URL or link_ttl; events can carry only one link")
	}
	a.recordingLinks = l
	return nil
}

// linkRecordings gives recording.ready and call.completed events of an account whose
// recordings pbx_recordings fetches (a pbx.Recorder: Mango) that name a recording but have no
// URL a signed link to it, valid from now. Other PBXs send their own link, kept as given.
func (a *App) linkRecordings(events []event.Event, now time.Time) {
	if a.recordingLinks == nil {
		return
	}
	for i := range events {
		d := &events[i].Data
		typ := events[i].Type
		if (typ == event.TypeRecordingReady || typ == event.TypeCompleted) &&
			d.RecordingID != "" && d.RecordingURL == "" {
			d.RecordingURL = a.recordingLinks.Link(d.Account, d.RecordingID, now)
		}
	}
}
