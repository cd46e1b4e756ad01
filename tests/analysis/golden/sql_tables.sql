-- Golden SQL fixtures: each block is a statement preceded by its expected tables.
-- Format: "-- dialect: X", "-- reads: a, b", "-- writes: c", "-- locks: d" (empty = none).

-- dialect: postgres
-- reads: store_product
-- writes:
-- locks:
SELECT "store_product"."id" FROM "store_product" WHERE "store_product"."id" = %s

-- dialect: postgres
-- reads: orders_orderline, store_product
-- writes:
-- locks:
WITH recent AS (SELECT order_id, product_id FROM orders_orderline WHERE created > %(since)s)
SELECT p.id, COUNT(*) FROM recent r JOIN store_product p ON p.id = r.product_id GROUP BY p.id

-- dialect: postgres
-- reads: b
-- writes: a
-- locks:
UPDATE a SET total = b.total FROM b WHERE a.id = b.a_id

-- dialect: postgres
-- reads: orders_order
-- writes: orders_cart
-- locks:
DELETE FROM orders_cart USING orders_order WHERE orders_cart.id = orders_order.cart_id

-- dialect: postgres
-- reads: staging_stock
-- writes: store_stocklevel
-- locks:
MERGE INTO store_stocklevel t USING staging_stock s ON t.id = s.id
WHEN MATCHED THEN UPDATE SET quantity = s.quantity
WHEN NOT MATCHED THEN INSERT (id, quantity) VALUES (s.id, s.quantity)

-- dialect: postgres
-- reads: orders_order, orders_orderline
-- writes: reporting_daily
-- locks:
INSERT INTO reporting_daily (day, revenue)
SELECT o.created::date, SUM(l.price) FROM orders_order o JOIN orders_orderline l ON l.order_id = o.id
GROUP BY 1

-- dialect: postgres
-- reads: store_stocklevel
-- writes:
-- locks: store_stocklevel
SELECT * FROM store_stocklevel WHERE product_id = $1 FOR UPDATE

-- dialect: postgres
-- reads: store_stocklevel
-- writes: store_stocklevel
-- locks:
UPDATE store_stocklevel SET quantity = quantity - 1
WHERE id IN (SELECT id FROM store_stocklevel WHERE quantity > 0 LIMIT 1)

-- dialect: postgres
-- reads:
-- writes: archive_order, orders_order
-- locks:
WITH moved AS (DELETE FROM orders_order WHERE status = 'old' RETURNING *)
INSERT INTO archive_order SELECT * FROM moved

-- dialect: postgres
-- reads: accounts_user
-- writes:
-- locks:
SELECT u.id FROM public.accounts_user u WHERE u.email LIKE 'a%%' AND u.id = ANY(%s)

-- dialect: mysql
-- reads: b
-- writes: a
-- locks:
UPDATE a JOIN b ON a.id = b.a_id SET a.total = b.total

-- dialect: mysql
-- reads: orders_order
-- writes: orders_cart
-- locks:
DELETE orders_cart FROM orders_cart JOIN orders_order ON orders_order.cart_id = orders_cart.id

-- dialect: mysql
-- reads: c
-- writes: a, b
-- locks:
DELETE FROM a, b USING a JOIN b ON a.id = b.id JOIN c ON c.id = b.id

-- dialect: mysql
-- reads: store_product
-- writes:
-- locks: store_product
SELECT `store_product`.`id` FROM `store_product` WHERE `id` = %s LOCK IN SHARE MODE

-- dialect: sqlite
-- reads:
-- writes: notifications_outboundmessage
-- locks:
INSERT OR REPLACE INTO notifications_outboundmessage (id, body) VALUES (?, ?)

-- dialect: sqlite
-- reads: reviews_review
-- writes:
-- locks:
SELECT "reviews_review"."id" FROM "reviews_review" WHERE "reviews_review"."product_id" IN (1, 2, 3) LIMIT 21

-- dialect: tsql
-- reads: orders
-- writes:
-- locks:
SELECT TOP 5 * FROM [dbo].[Orders] o WITH (NOLOCK)

-- dialect: postgres
-- reads: t
-- writes:
-- locks:
SELECT * FROM generate_series(1, 3) g JOIN t ON t.n = g

-- dialect: postgres
-- reads:
-- writes: store_product
-- locks:
TRUNCATE store_product

-- dialect: postgres
-- reads:
-- writes: store_tag
-- locks:
CREATE TABLE store_tag (id serial PRIMARY KEY, name text)
