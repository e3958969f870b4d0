# Operations compare timestamps with logs, Stripe and each other: every date-time shown (admin
# lists, pages and the console) carries its seconds and its time zone, in one sortable shape.
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
