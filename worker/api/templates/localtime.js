// Times in the viewer's time zone: every <time datetime="…Z"> the server wrote in UTC shows the
// browser's local time, with the UTC value in its tooltip; datetime-local filters are filled and
// sent in local time, converted to UTC on submit. Without this script the page stays in UTC.
(() => {
  const pad = (n) => String(n).padStart(2, "0");
  const local = (d, seconds) =>
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}` +
    (seconds ? `:${pad(d.getSeconds())}` : "");
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  for (const el of document.querySelectorAll("time[datetime$='Z']")) {
    const d = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(d.getTime())) continue;
    el.title = el.textContent.replace(/ UTC$/, "") + " UTC";
    el.textContent = local(d, el.dataset.precision !== "minute");
    el.dataset.local = zone;
  }
  for (const note of document.querySelectorAll(".tz-note")) {
    note.textContent = `Times are in your time zone (${zone}); hover a time for UTC.`;
  }
  const inputs = document.querySelectorAll("input[type=datetime-local]");
  for (const input of inputs) {
    const d = new Date(input.dataset.utc || "");
    if (!Number.isNaN(d.getTime())) input.value = local(d, false).replace(" ", "T");
    input.title = `In your time zone (${zone})`;
  }
  for (const form of new Set([...inputs].map((i) => i.form).filter(Boolean))) {
    form.addEventListener("submit", () => {
      for (const input of form.querySelectorAll("input[type=datetime-local][name]")) {
        if (!input.value) continue;
        const hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = input.name;
        hidden.value = new Date(input.value).toISOString().replace(".000Z", "Z");
        input.removeAttribute("name");
        form.append(hidden);
      }
    });
  }
})();
