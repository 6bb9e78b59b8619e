// Package mango reads Mango Office VPBX webhooks: it parses and verifies the signed form
// (ParseForm, Verify), routes on the URL suffix Mango appends to the configured base URL
// (Route), and translates the `json` payload into canonical events (Translate). Protocol facts
// are in docs/mango.md; the canonical event is in docs/events.md.
//
// Every authentic message yields exactly one event, except a ping, which yields none. What does
// not map (record/tagged, sms, result/stat(s), a recording that was not kept, an unknown
// suffix or call_state, invalid JSON, a field of an unexpected type, a missing key field) is a
// pbx.unmapped event whose error says why; Translate never fails, so nothing authentic is lost.
//
// Event ids are deterministic (event.EventID) over the idempotency keys of docs/mango.md
// (Identifiers and event ids), so a re-send is deduplicated by the queue:
//
//	/events/call            call_id + seq (the type stands for call_state)
//	/events/summary         entry_id
//	/events/recording       recording_id
//	/events/record/added    recording_id
//	/events/dtmf            call_id + seq
//	/result/<command>       command_id
//	pbx.unmapped            SHA-256 of the payload
//
// None of them has the URL suffix in it: Mango's sign covers the payload only, so the suffix
// could be changed by anyone who replays a body. Check refuses a payload posted to a suffix it
// cannot belong to, and one older than the dedupe window.
//
// Both /events/recording (Completed, kept) and /events/record/added become recording.ready
// keyed on recording_id alone, so they get the same event id and a CRM receives one
// recording.ready per recording, from whichever arrives first, usually the Completed. Mango
// only promises the file is downloadable after record/added; the event is not held back for
// it (record/added names neither leg nor employee, and an account that never gets it would
// never hear of its recordings): pbx_recordings waits a few seconds for a file Mango does not
// have yet instead.
//
// Direction of a leg (/events/call, /events/dtmf) says who calls whom, decided on who is an
// employee (has an extension), in this order:
//
//	callback_initiator set                    outbound (the PBX calls a customer back)
//	command_id set, and the leg continues no  outbound (leg 1 of a click-to-call: Mango rings our
//	other leg (no taken_from_call_id) and     employee first, showing the number to be called
//	came in on no line (no to.line_number)    as from, so who-calls-whom would say inbound)
//	both from and to have an extension        internal
//	only from has an extension                outbound
//	to has an extension or acd_group, or the
//	leg has a line_number or is in ivr/queue  inbound
//	otherwise                                 unknown
//
// command_id alone does not decide: Mango puts a command's command_id on every leg the
// command creates, and commands/route (the CRM routing a caller out of the IVR) or
// commands/transfer create legs of a call that exists already, taken from another leg and on
// the line the caller came in on. Such a leg keeps the direction of who calls whom: a
// caller routed to extension 123 is inbound; leg 2 of a click-to-call (employee → customer,
// taken from leg 1) is outbound because the employee calls.
//
// A summary's direction is its call_direction (0 internal, 1 inbound, 2 outbound).
//
// occurred_at (and the envelope's time) is the payload's timestamp, for a summary its
// end_time; when the payload has none, the time the message was received.
//
// seq is Mango's counter: per leg for call.* leg events, per leg for DTMF packets on call.dtmf
// (a separate counter), and 0 where Mango's counter is not per leg (recording.ready,
// call.completed, command.result).
package mango
