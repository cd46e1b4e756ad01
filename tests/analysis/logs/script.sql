-- a maintenance script
UPDATE store_product SET active = false WHERE id IN (SELECT product_id FROM store_stocklevel WHERE quantity = 0);
DELETE FROM orders_cart
WHERE updated < now() - interval '30 days';
SELECT count(*) FROM accounts_user;
