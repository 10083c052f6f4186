// The eyevinn clients for eyevinn.html. They import bare names (`events`,
// `sdp-transform`, CommonJS), so a browser cannot load them from node_modules:
// `npm ci` bundles this file into node_modules/.bundle/eyevinn.js (the `prepare`
// script in package.json).
export { WHIPClient } from "@eyevinn/whip-web-client";
export { WebRTCPlayer } from "@eyevinn/webrtc-player";
