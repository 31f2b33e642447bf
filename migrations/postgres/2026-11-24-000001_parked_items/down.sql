DROP TABLE parked_items;
