// The reader's time zone, as their browser names it (Europe/Istanbul), kept in a cookie: the next page shows its
// times in it (apps/common/timezones.py). Every time on a page names its zone, so the first page, still in the
// site's zone, is not misread.
(function () {
  "use strict";
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone || !/^[A-Za-z0-9_+\/-]{1,64}$/.test(zone)) return;
  if (document.cookie.split("; ").indexOf("logiflow_tz=" + zone) !== -1) return;
  document.cookie = "logiflow_tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax";
})();
