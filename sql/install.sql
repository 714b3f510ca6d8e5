-- bis installs into schema bis; the object list is the whole API
CREATE EXTENSION bis;
\dx bis
\dx+ bis
-- bis.stock_levels is tracked from the start
SELECT * FROM bis.tracked_tables;
-- the settings exist once the library is loaded
LOAD 'bis';
SHOW bis.default_threshold;
SHOW bis.notify;
SET bis.default_threshold = 0;
SET bis.bogus = 1;
