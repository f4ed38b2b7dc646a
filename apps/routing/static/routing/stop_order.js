/* The route add form's stop rows, reorderable: drag a row by its handle (mouse, pen or touch: pointer events), or
   focus the handle and press the up and down arrow keys. A move rewrites the "order" numbers in the rows' new order
   (1, 2, … for filled-in rows, empty for blank ones), which the server sorts the stops by. Typed numbers keep working:
   they are rewritten only after a move. "Add a stop" adds rows up to the most a route may have. Loaded as a file
   (the CSP allows no inline script). */
(function () {
  "use strict";

  function formRows(body) {
    return Array.prototype.slice.call(body.querySelectorAll("tr.form-row"));
  }

  function sibling(row, step) {
    var next = step < 0 ? row.previousElementSibling : row.nextElementSibling;
    while (next && !next.classList.contains("form-row")) {
      next = step < 0 ? next.previousElementSibling : next.nextElementSibling;
    }
    return next;
  }

  function errorsOf(row) {
    // A row's errors are shown in the table row just above it, and move with it.
    var above = row.previousElementSibling;
    return above && above.classList.contains("row-form-errors") ? above : null;
  }

  function place(row, before) {
    // Put `row` (and its errors) just above the form row `before`, or at the end when there is none.
    var body = row.parentNode;
    var anchor = before ? errorsOf(before) || before : null;
    var errors = errorsOf(row);
    if (errors) {
      body.insertBefore(errors, anchor);
    }
    body.insertBefore(row, anchor);
  }

  function filled(row) {
    return Array.prototype.some.call(row.querySelectorAll("td:not(.field-ORDER) input"), function (input) {
      return input.value.trim() !== "";
    });
  }

  function renumber(body) {
    var n = 0;
    formRows(body).forEach(function (row) {
      var order = row.querySelector(".field-ORDER input");
      if (order) {
        // A blank row gets no number: a number alone would make the server validate it as a stop.
        order.value = filled(row) ? String(++n) : "";
      }
    });
  }

  function startDrag(event) {
    if (event.button !== 0) {
      return;
    }
    var row = event.currentTarget.closest("tr");
    var body = row.parentNode;
    var moved = false;
    event.preventDefault();
    row.classList.add("stop-dragging");

    // Listened for on the document, not captured by the handle: moving the row takes the handle out of the
    // document for a moment, which would release a pointer capture.
    function follow(move) {
      var under = document.elementFromPoint(move.clientX, move.clientY);
      var target = under && under.closest("tr.form-row");
      if (!target || target === row || target.parentNode !== body) {
        return;
      }
      var box = target.getBoundingClientRect();
      place(row, move.clientY < box.top + box.height / 2 ? target : sibling(target, 1));
      moved = true;
    }

    function end() {
      document.removeEventListener("pointermove", follow);
      document.removeEventListener("pointerup", end);
      document.removeEventListener("pointercancel", end);
      row.classList.remove("stop-dragging");
      if (moved) {
        renumber(body);
      }
    }

    document.addEventListener("pointermove", follow);
    document.addEventListener("pointerup", end);
    document.addEventListener("pointercancel", end);
  }

  function keyMove(event) {
    var step = { ArrowUp: -1, ArrowDown: 1 }[event.key];
    if (!step) {
      return;
    }
    var handle = event.currentTarget;
    var row = handle.closest("tr");
    var neighbour = sibling(row, step);
    event.preventDefault();
    if (!neighbour) {
      return;
    }
    place(row, step < 0 ? neighbour : sibling(neighbour, 1));
    renumber(row.parentNode);
    handle.focus(); // moving the row out of the document and back drops the focus
  }

  function setUp() {
    var table = document.querySelector("#stops-group table");
    if (!table) {
      return;
    }
    var header = document.createElement("th");
    header.textContent = "move";
    table.querySelector("thead tr").insertBefore(header, table.querySelector("thead th"));
    table.querySelectorAll("tr.row-form-errors td[colspan]").forEach(function (cell) {
      cell.colSpan += 1;
    });
    formRows(table.tBodies[0]).forEach(addHandle);
    addRowButton(table);
  }

  function addHandle(row) {
    var cell = document.createElement("td");
    var handle = document.createElement("button");
    cell.className = "stop-move";
    handle.type = "button";
    handle.className = "stop-handle";
    handle.textContent = "\u2195";
    handle.title = "Drag to move this stop, or press the up and down arrow keys";
    handle.setAttribute("aria-label", "Move stop (up and down arrow keys)");
    handle.addEventListener("pointerdown", startDrag);
    handle.addEventListener("keydown", keyMove);
    cell.appendChild(handle);
    row.insertBefore(cell, row.firstElementChild);
  }

  function addRowButton(table) {
    // "Add a stop" appends a row made from the formset's empty form, up to the most stops a route may have.
    var template = document.getElementById("stops-empty");
    var total = document.getElementById("id_stops-TOTAL_FORMS");
    var most = parseInt(table.getAttribute("data-max"), 10);
    if (!template || !total) {
      return;
    }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button stop-add";
    button.textContent = "Add a stop";
    function refresh() {
      var count = parseInt(total.value, 10);
      button.disabled = count >= most;
      button.title = button.disabled ? "A route has at most " + most + " stops" : "";
    }
    button.addEventListener("click", function () {
      var index = parseInt(total.value, 10);
      if (index >= most) {
        return;
      }
      var holder = document.createElement("tbody");
      holder.innerHTML = template.innerHTML.replace(/__prefix__/g, String(index)).trim();
      var row = holder.querySelector("tr.form-row");
      addHandle(row);
      table.tBodies[0].appendChild(row);
      total.value = String(index + 1);
      refresh();
      row.querySelector(".field-name input").focus();
    });
    table.parentNode.insertBefore(button, table.nextSibling);
    refresh();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setUp);
  } else {
    setUp();
  }
})();
