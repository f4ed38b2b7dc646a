/* A route's map on its admin page: depot, stops in visiting order, and the path between them.
   Data comes from the page's <script type="application/json" id="route-map-data"> block (not executed; the CSP
   allows scripts from this server only). The path and markers are vectors, so they show even when tiles do not. */
(function () {
  "use strict";

  function tooltip(text) {
    // Stop names are user input: set as text, never as HTML.
    var span = document.createElement("span");
    span.textContent = text;
    return span;
  }

  function draw() {
    var container = document.getElementById("route-map");
    var source = document.getElementById("route-map-data");
    if (!container || !source || typeof L === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    var map = L.map(container, { scrollWheelZoom: false });
    if (data.tiles) {
      L.tileLayer(data.tiles, { maxZoom: 18, attribution: data.attribution }).addTo(map);
    }
    var depot = [data.depot.lat, data.depot.lon];
    var path = [depot];
    L.circleMarker(depot, { radius: 9, color: "#264b5d", fillColor: "#264b5d", fillOpacity: 0.9 })
      .bindTooltip(tooltip("Depot: " + data.depot.name))
      .addTo(map);
    data.stops.forEach(function (stop) {
      var point = [stop.lat, stop.lon];
      path.push(point);
      L.marker(point, {
        icon: L.divIcon({ className: "route-map-stop", html: String(Number(stop.sequence)), iconSize: [22, 22] }),
        title: stop.sequence + ". " + stop.name,
      })
        .bindTooltip(tooltip(stop.sequence + ". " + stop.name + " — arrives " + stop.arrival))
        .addTo(map);
    });
    L.polyline(path, { color: "#c0392b", weight: 3 }).addTo(map);
    map.fitBounds(L.latLngBounds(path).pad(0.15));
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
