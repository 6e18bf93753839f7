-- A token count (`POST /v1/messages/count_tokens`) may send the request to a provider: it is
-- logged like the other endpoints.
alter table request_logs drop constraint request_logs_endpoint_check;
alter table request_logs add constraint request_logs_endpoint_check
    check (endpoint in ('chat', 'embeddings', 'messages', 'responses', 'completions',
                        'count_tokens'));
