-- A token bound to one Device may enroll it again, replacing its agent's credentials;
-- other tokens never take over a Device whose agent is enrolled (ADR 15).
ALTER TABLE enrollment_tokens ADD COLUMN device text;

-- The certificate an agent held before its last renewal, accepted only until the agent
-- first presents the new one: a renewal whose answer was lost does not lock it out, and a
-- re-enrollment clears it, so the replaced host's certificate stops working at once.
ALTER TABLE agents ADD COLUMN previous_certificate_serial text;
