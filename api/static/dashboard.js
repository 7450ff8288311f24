// The dashboard's only script: live validation of the reward-plan form (the server checks
// the same rules again) and copy-to-clipboard buttons. Loaded with `defer`, no inline code.
"use strict";

(function () {
  var WHOLE = /^[+-]?\d+$/;

  // The same rules as royalties.plans.validate_plan, plus the form's own shape
  // (levels filled from level 1 without gaps).
  function checkPlan(form) {
    var maxLevels = parseInt(form.dataset.maxLevels, 10);
    var maxTotal = parseInt(form.dataset.maxTotal, 10);
    var maxHold = parseInt(form.dataset.maxHold, 10);
    var inputs = [];
    for (var i = 1; i <= maxLevels; i++) {
      inputs.push(form.elements["rate_" + i]);
    }
    var last = -1;
    inputs.forEach(function (input, index) {
      if (input.value.trim() !== "") last = index;
    });
    var result = { ok: true, message: "", bad: [], total: 0 };
    function fail(message, input) {
      if (result.ok) {
        result.ok = false;
        result.message = message;
      }
      if (input) result.bad.push(input);
    }
    if (last < 0) fail("Give at least level 1 a rate (1 to " + maxLevels + " levels).", inputs[0]);
    for (var j = 0; j <= last; j++) {
      var text = inputs[j].value.trim();
      if (text === "") {
        fail("Level " + (j + 1) + " is empty: fill the levels from level 1 without gaps.", inputs[j]);
      } else if (!WHOLE.test(text)) {
        fail("Level " + (j + 1) + " must be a whole number of basis points.", inputs[j]);
      } else if (parseInt(text, 10) < 0) {
        fail("Level " + (j + 1) + " cannot be negative.", inputs[j]);
      } else {
        result.total += parseInt(text, 10);
      }
    }
    if (result.total > maxTotal) {
      fail("The rates add up to " + result.total + " bps; at most " + maxTotal +
        " bps (" + maxTotal / 100 + "%) of a sale may go to fans.");
      inputs.slice(0, last + 1).forEach(function (input) { result.bad.push(input); });
    }
    var hold = form.elements.hold_days;
    var holdText = hold.value.trim();
    if (!WHOLE.test(holdText)) {
      fail("Hold days must be a whole number from 0 to " + maxHold + ".", hold);
    } else {
      var days = parseInt(holdText, 10);
      if (days < 0 || days > maxHold) {
        fail("Hold days must be between 0 and " + maxHold + ".", hold);
      }
    }
    return result;
  }

  function showPlan(form, result) {
    var error = form.querySelector("[data-plan-error]");
    var total = form.querySelector("[data-plan-total]");
    var fields = form.querySelectorAll("input[type=number]");
    Array.prototype.forEach.call(fields, function (input) {
      if (result.bad.indexOf(input) >= 0) {
        input.setAttribute("aria-invalid", "true");
      } else {
        input.removeAttribute("aria-invalid");
      }
    });
    if (total) {
      total.textContent = "Fans get " + result.total + " bps (" +
        (result.total / 100).toFixed(2).replace(/\.?0+$/, "") + "%) of each sale in all.";
    }
    if (error) {
      error.textContent = result.message;
      error.hidden = result.ok;
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll("form[data-plan-form]"), function (form) {
    var first = checkPlan(form);
    // Keep a message the server sent until the user changes something.
    var serverError = form.querySelector("[data-plan-error]:not([hidden])");
    if (!serverError) showPlan(form, first);
    form.addEventListener("input", function () {
      showPlan(form, checkPlan(form));
    });
    form.addEventListener("submit", function (event) {
      var result = checkPlan(form);
      showPlan(form, result);
      if (!result.ok) {
        event.preventDefault();
        (result.bad[0] || form.querySelector("input[type=number]")).focus();
      }
    });
  });

  // Copy buttons: the real clipboard where the browser allows it, else a selection copy.
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), function (button) {
    var label = button.textContent;
    button.addEventListener("click", function () {
      var text = button.dataset.copy;
      var status = document.querySelector("[data-copy-status]");
      var copy = navigator.clipboard && window.isSecureContext
        ? navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); })
        : fallbackCopy(text);
      copy.then(function () {
        button.dataset.copied = text;
        button.textContent = "Copied";
        if (status) status.textContent = "Link copied to the clipboard.";
        window.setTimeout(function () { button.textContent = label; }, 2000);
      }, function () {
        button.textContent = "Select and copy";
        if (status) status.textContent = "Your browser refused; select the link and copy it.";
      });
    });
  });
})();
