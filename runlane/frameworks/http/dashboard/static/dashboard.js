// runlane dashboard: live updates, no framework. A section with data-refresh is re-rendered by
// the server (an HTML fragment, escaped there) when its live feed (data-live: Server-Sent
// Events) reports a change, or every data-interval ms when there is no feed or it is gone.
"use strict";

(function () {
  // every feed this page opened: closed when the page is left (a browser keeps at most 6
  // connections to a host over HTTP/1.1; a page kept in the back-forward cache with its feeds
  // open would hold them, and the next pages would wait for one)
  var feeds = [];
  function openFeed(url) {
    var events = new EventSource(url);
    feeds.push(events);
    return events;
  }
  window.addEventListener("pagehide", function () {
    feeds.forEach(function (events) { events.close(); });
    feeds = [];
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) { window.location.reload(); }  // back from the cache: fresh feeds
  });

  function fetchFragment(section) {
    var url = section.getAttribute("data-refresh");
    return fetch(url, { credentials: "same-origin", cache: "no-store", headers: { accept: "text/html" } })
      .then(function (response) {
        if (response.status === 401) { window.location.reload(); return; }
        if (!response.ok) { return; }
        return response.text().then(function (text) {
          var doc = new DOMParser().parseFromString(text, "text/html");
          section.replaceChildren.apply(section, Array.prototype.slice.call(doc.body.childNodes));
          section.setAttribute("data-refreshed", String(Date.now()));
        });
      })
      .catch(function () { /* the next tick tries again */ });
  }

  function isFinal(section) {
    return section.querySelector("[data-final]") !== null;
  }

  function liveSection(section) {
    var interval = parseInt(section.getAttribute("data-interval") || "2000", 10);
    var pending = null;
    var timer = null;
    var inFlight = false;
    var again = false;  // a change came while a refresh was under way: one more after it

    function refresh() {
      if (inFlight) { return; }
      inFlight = true;
      fetchFragment(section).then(function () {
        inFlight = false;
        if (isFinal(section) && timer !== null) { clearInterval(timer); timer = null; }
        if (again) { again = false; soon(); }
      });
    }
    function soon() {  // several changes at once: one refresh
      if (pending === null) {
        pending = setTimeout(function () {
          pending = null;
          if (inFlight) { again = true; } else { refresh(); }
        }, 150);
      }
    }
    function poll() {
      if (timer === null && !isFinal(section)) { timer = setInterval(refresh, interval); }
    }
    section.liveRefresh = soon;

    var source = section.getAttribute("data-live");
    if (source && window.EventSource) {
      var events = openFeed(source);
      events.addEventListener("run", soon);
      events.addEventListener("end", function () { events.close(); soon(); });
      events.addEventListener("open", function () { section.setAttribute("data-feed", "sse"); });
      events.onerror = function () {
        if (events.readyState === EventSource.CLOSED) {  // no feed here: poll instead
          section.setAttribute("data-feed", "poll");
          poll();
        }
      };
    } else {
      section.setAttribute("data-feed", "poll");
      poll();
    }
  }

  function streamSection(section) {
    var box = section.querySelector("#streams");
    var live = document.getElementById("live");
    if (!window.EventSource || !box) { return; }
    var events = openFeed(section.getAttribute("data-live"));
    events.addEventListener("open", function () { section.setAttribute("data-feed", "sse"); });
    events.addEventListener("run", function () { if (live && live.liveRefresh) { live.liveRefresh(); } });
    events.addEventListener("chunk", function (event) {
      var part;
      try { part = JSON.parse(event.data); } catch (e) { return; }
      var empty = box.querySelector(".empty");
      if (empty) { empty.remove(); }
      var pre = null;
      box.querySelectorAll("pre[data-key]").forEach(function (el) {
        if (el.getAttribute("data-key") === String(part.key)) { pre = el; }
      });
      if (pre === null) {
        var title = document.createElement("h3");
        title.textContent = String(part.key);
        pre = document.createElement("pre");
        pre.setAttribute("data-key", String(part.key));
        box.appendChild(title);
        box.appendChild(pre);
      }
      var text = typeof part.chunk === "string" ? part.chunk : JSON.stringify(part.chunk);
      pre.appendChild(document.createTextNode(text));
    });
    events.addEventListener("end", function () { events.close(); });
    events.onerror = function () {
      if (events.readyState === EventSource.CLOSED) { section.setAttribute("data-feed", "none"); }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("section[data-refresh]").forEach(liveSection);
    document.querySelectorAll("section[data-live]:not([data-refresh])").forEach(streamSection);
  });
})();
