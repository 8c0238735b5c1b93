// The vendored wavesurfer.js builds, shared by the audition and the submit form: the kernel
// sends them once per page as message buffers (custom message "libs"), imported here
// through blob URLs, so nothing is loaded from a CDN and the synced state stays small.
// Python prepends this file to each widget's module (widgets/audition.py: esm()).

let libs = null;
function loadLibs(model) {
  if (!libs) {
    libs = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        model.off("msg:custom", onLibs);
        reject(new Error("the kernel did not send the waveform code (is it running?)"));
      }, 60000);
      function onLibs(msg, buffers) {
        if (!msg || msg.type !== "libs") return;
        clearTimeout(timer);
        model.off("msg:custom", onLibs);
        const load = (buf) =>
          import(URL.createObjectURL(new Blob([buf], { type: "text/javascript" })));
        Promise.all(buffers.map(load))
          .then(([ws, rg]) => resolve({ WaveSurfer: ws.default, Regions: rg.default }))
          .catch(reject);
      }
      model.on("msg:custom", onLibs);
      model.send({ type: "libs" });
    });
    libs.catch(() => { libs = null; }); // a later view asks again
  }
  return libs;
}
