-- Request logs of the Responses API (`POST /v1/responses`) and the legacy Completions API
-- (`POST /v1/completions`) name their endpoint like the others.
alter table request_logs drop constraint request_logs_endpoint_check;
alter table request_logs add constraint request_logs_endpoint_check
    check (endpoint in ('chat', 'embeddings', 'messages', 'responses', 'completions'));
