// amohook's widget for amoCRM and Kommo: in the widget's settings it gives
// the account's administrators a link to their amohook page, where they
// choose what the notes say. `amohook widget` writes this deployment's
// address into AMOHOOK below.
//
// How the link is asked for: amoCRM's `$authorizedAjax` adds X-Auth-Token,
// a one-time token amoCRM signs with the integration's secret for the user
// looking at amoCRM; amohook checks it and answers a link that works once,
// for a minute. The link is asked for again while the settings stay open.
define([], function () {
  'use strict';
  var AMOHOOK = __AMOHOOK__;
  var REFRESH_MS = 45000;

  return function () {
    var self = this;
    var timer = null;

    function words() {
      var all = typeof self.i18n === 'function' ? self.i18n('amohook') : null;
      return all || {};
    }

    function word(key) {
      return words()[key] || key;
    }

    // The settings' body: a jQuery object in amoCRM, an element elsewhere.
    function element(body) {
      return body && body.jquery ? body[0] : body;
    }

    function show(box) {
      var status = box.querySelector('.amohook-status');
      var link = box.querySelector('.amohook-link');
      status.textContent = word('opening');
      self.$authorizedAjax({
        url: AMOHOOK.base_url + '/widget/session',
        method: 'POST',
        type: 'POST',
        dataType: 'json'
      }).then(function (answer) {
        link.href = answer.url;
        link.hidden = false;
        status.textContent = word('ready');
      }, function (failure) {
        var json = failure && failure.responseJSON;
        link.hidden = true;
        status.textContent = (json && json.message) || word('failed');
      });
    }

    this.callbacks = {
      render: function () { return true; },
      init: function () { return true; },
      bind_actions: function () { return true; },
      settings: function (body) {
        var root = element(body);
        if (!root) { return true; }
        var box = document.createElement('div');
        box.className = 'amohook-open';
        var status = document.createElement('p');
        status.className = 'amohook-status';
        var link = document.createElement('a');
        link.className = 'button-input amohook-link';
        link.target = '_blank';
        link.rel = 'noopener';
        link.hidden = true;
        link.textContent = word('open');
        box.appendChild(status);
        box.appendChild(link);
        root.appendChild(box);
        show(box);
        if (timer) { clearInterval(timer); }
        timer = setInterval(function () {
          if (document.body.contains(box)) { show(box); } else { clearInterval(timer); timer = null; }
        }, REFRESH_MS);
        return true;
      },
      onSave: function () { return true; },
      destroy: function () { if (timer) { clearInterval(timer); timer = null; } }
    };
    return this;
  };
});
