// The web UI's own behaviour: uploads with a progress bar per file, and seeking both players.
"use strict";

function uploadFile(file, list) {
  const row = document.createElement("li");
  row.className = "upload";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = file.name;
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = 0;
  const state = document.createElement("span");
  state.className = "state";
  state.textContent = "uploading";
  row.append(name, bar, state);
  list.prepend(row);

  const form = new FormData();
  form.append("file", file, file.name);
  const request = new XMLHttpRequest();
  request.open("POST", document.getElementById("upload").dataset.uploadUrl);
  request.setRequestHeader("HX-Request", "true"); // lets the key cookie count (app/auth.py)
  request.upload.onprogress = (event) => {
    if (event.lengthComputable) bar.value = (100 * event.loaded) / event.total;
  };
  request.onload = () => {
    let body = {};
    try { body = JSON.parse(request.responseText); } catch (error) { body = {}; }
    if (request.status === 200 || request.status === 202) {
      bar.value = 100;
      row.classList.add("done");
      state.innerHTML = "";
      const link = document.createElement("a");
      link.href = "/ui/videos/" + body.id;
      link.textContent = body.duplicate ? "already in the library (video " + body.id + ")" : "queued as video " + body.id;
      state.append(link);
    } else {
      row.classList.add("failed");
      const reason = request.status === 413 ? "too large: " : "refused (" + request.status + "): ";
      state.textContent = reason + (body.detail || request.statusText);
    }
    document.body.dispatchEvent(new Event("refresh"));
  };
  request.onerror = () => {
    row.classList.add("failed");
    state.textContent = "the upload was cut off (the file may be over the size limit, or the service is down)";
  };
  request.send(form);
}

function setUpUploads() {
  const zone = document.getElementById("upload");
  if (!zone) return;
  const input = document.getElementById("files");
  const list = document.getElementById("uploads");
  const send = (files) => Array.from(files).forEach((file) => uploadFile(file, list));
  document.getElementById("choose").addEventListener("click", () => input.click());
  input.addEventListener("change", () => { send(input.files); input.value = ""; });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    send(event.dataTransfer.files);
  });
}

// Compare page: a range (or a heat-map cell) carries its times in data-a / data-b.
function setUpSeeking() {
  const first = document.getElementById("player-1");
  const second = document.getElementById("player-2");
  if (!first || !second) return;
  const seek = (target) => {
    const range = target.closest("[data-a]");
    if (!range) return;
    first.currentTime = parseFloat(range.dataset.a);
    second.currentTime = parseFloat(range.dataset.b);
    document.querySelectorAll(".range.active").forEach((r) => r.classList.remove("active"));
    range.classList.add("active");
  };
  document.querySelectorAll("[data-seek-both]").forEach((area) => {
    area.addEventListener("click", (event) => seek(event.target));
    area.addEventListener("keydown", (event) => { if (event.key === "Enter") seek(event.target); });
  });
}

// htmx sends HX-Request itself; forms it posts are thereby accepted with the key cookie.
document.addEventListener("DOMContentLoaded", () => { setUpUploads(); setUpSeeking(); });
