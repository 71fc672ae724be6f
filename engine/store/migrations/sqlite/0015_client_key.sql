-- The private key of an integration's client certificate (mutual TLS), sealed like the client
-- secret (tern_integrations::config::IntegrationConfig::client_cert holds the certificate).
ALTER TABLE integrations ADD COLUMN client_key BLOB;
