-- Neutralised copies (staging, test) must never reach the merchant's Vipps account.
UPDATE payment_provider
   SET vipps_client_id = NULL,
       vipps_client_secret = NULL,
       vipps_subscription_key = NULL,
       vipps_webhook_secret = NULL,
       vipps_webhook_id = NULL;
DELETE FROM payment_vipps_token;
