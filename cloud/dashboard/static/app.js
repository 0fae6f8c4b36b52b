// semcom dashboard: the live feed (Server-Sent Events). Nothing else needs a script.
"use strict";

function timeText(us) {
  return new Date(us / 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function showTrack(list, template, ev, decoder) {
  const old = list.querySelector('li[data-track="' + ev.id + '"]');
  const item = template.content.firstElementChild.cloneNode(true);
  item.dataset.track = String(ev.id);
  item.dataset.storedUs = String(ev.stored_us);
  item.dataset.receivedMs = String(Date.now());
  const alt = ev["class"] + " on " + ev.camera;
  const img = item.querySelector("img");
  const holder = item.querySelector(".placeholder");
  if (ev.detection_id && decoder) {
    img.src = "/ui/detections/" + ev.detection_id + "/image";
    img.alt = alt;
    img.hidden = false;
    holder.remove();
  } else {
    img.remove();
    holder.textContent = ev.detection_id ? "no decoder configured" : "no crop yet";
    holder.setAttribute("aria-label", alt + ": " + holder.textContent);
  }
  const link = item.querySelector("a.track");
  link.href = "/tracks/" + ev.id;
  link.textContent = "Track " + ev.id;
  item.querySelector(".cls").textContent = ev["class"];
  item.querySelector(".cam").textContent = ev.edge + "/" + ev.camera;
  item.querySelector(".when").textContent = timeText(ev.first_seen_us);
  if (old) {
    old.replaceWith(item);
  } else {
    list.prepend(item);
    while (list.children.length > 200) list.lastElementChild.remove();
  }
}

function startLive() {
  const list = document.getElementById("live-tracks");
  const template = document.getElementById("live-item");
  const status = document.getElementById("live-status");
  if (!list || !template || !window.EventSource) return;
  const decoder = list.dataset.decoder === "1";
  const source = new EventSource("/ui/live/events?after=" + encodeURIComponent(list.dataset.after || "0"));
  source.addEventListener("open", () => { status.textContent = "Live: new tracks appear at the top."; });
  source.addEventListener("error", () => { status.textContent = "Live feed interrupted: reconnecting…"; });
  source.addEventListener("track", (msg) => {
    showTrack(list, template, JSON.parse(msg.data), decoder);
  });
}

document.addEventListener("DOMContentLoaded", startLive);
